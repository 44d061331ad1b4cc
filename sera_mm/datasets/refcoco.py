"""RefCOCO / RefCOCO+ / RefCOCOg (REFER files) as an mmengine dataset."""
import contextlib
import gc
import glob
import json
import math
import os.path as osp
import random
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import BaseDataset

from sera_mm.registry import DATASETS
from .refer_pickle import load_refer_pickle
from .transforms.load_referring_mask import validate_segmentation

README_HINT = "see the README section 'Data preparation'"
KNOWN_SPLITS = ('train', 'val', 'testA', 'testB', 'test')
#: types REFER uses for ids (ints; strings accepted too)
ID_TYPES = (int, str)
#: at most this many ids are listed in a message
MAX_LISTED = 20
#: largest image side accepted: JPEG's limit (COCO's images are <= 640); a
#: larger ``height`` / ``width`` is a typo that would make the mask decoder
#: allocate height * width bytes before the image is read
MAX_IMAGE_SIDE = 65535


@contextlib.contextmanager
def _gc_paused():
    """Pauses the cyclic garbage collector: loading RefCOCO creates millions
    of small containers and no cycles, and the collector's passes would take
    about 4 s of 6 s."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _missing(kind: str, path: str) -> FileNotFoundError:
    return FileNotFoundError(f'{kind} not found: {path} ({README_HINT})')


def load_json(path: str) -> Any:
    """Returns the content of JSON file ``path``; raises ValueError naming
    the file if it is not valid JSON or is nested too deeply."""
    try:
        with open(path, 'rb') as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f'{path} is not valid JSON (truncated or '
                         f'corrupt?): {e} ({README_HINT})') from e
    except RecursionError:
        raise ValueError(f'{path}: JSON nested too deeply to load (not a '
                         f'REFER or COCO file) ({README_HINT})') from None


@DATASETS.register_module()
class RefCOCODataset(BaseDataset):
    """Referring segmentation samples from REFER's ``instances.json`` and
    ``refs(<by>).p``, in mmdetection's layout (paths relative to
    ``data_root``)::

        data/coco/train2014/                     images
        data/coco/refcoco/instances.json         COCO images + annotations
        data/coco/refcoco/refs(unc).p            refs (RefCOCO, unc split)
        data/coco/refcoco+/refs(unc).p
        data/coco/refcocog/refs(umd).p, refs(google).p

    In ``test_mode`` every sentence of every referent of ``split`` is one
    sample; in training every referent is one sample whose sentence is drawn
    anew every epoch. The draw, and the random state the pipeline sees in a
    dataloader worker, are a function of (seed, epoch, sample index), set by
    :meth:`set_epoch`: the same whatever the number of workers, whether they
    persist, or whether the run was resumed. With an empty pipeline
    ``dataset[i]`` holds ``img_path``, ``image_id``, ``ref_id``, ``ann_id``,
    ``sent_id``, ``text`` (REFER's ``sent``), ``category_id``,
    ``segmentation`` (raw COCO polygons or RLE), ``no_target`` (False) and
    ``num_targets`` (1) as gRefCOCO's samples have them, ``height``,
    ``width``, ``seg_fields`` and ``sample_idx``. Every input error is raised at
    construction, naming the path, key or id at fault.

    Args:
        data_root: root joined to ``ann_file``, ``split_file`` and
            ``data_prefix`` (e.g. 'data/coco/').
        ann_file: COCO instances file (e.g. 'refcoco/instances.json').
        split_file: REFER refs pickle (e.g. 'refcoco/refs(unc).p'), loaded
            without running code (:func:`load_refer_pickle`), or the same
            list as JSON (a name ending in '.json').
        split: 'train' | 'val' | 'testA' | 'testB' | 'test', present in
            ``split_file``. Defaults to 'train'.
        data_prefix: ``dict(img_path='train2014/')``.
        pipeline: transforms applied to each sample.
        test_mode: one sample per sentence (True) or per referent (False).
        shuffle_sentences: control experiment: moves every sample's
            sentences (in training, the referent's list) to another sample
            of the split, seeded by ``shuffle_seed``, so that a model that
            reads the text must fail. Defaults to False.
        shuffle_seed: seed of that permutation. Defaults to 0.
        check_images: check once per unique image that the file exists
            (off for benchmarks of index building). Defaults to True.
        **kwargs: other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    METAINFO = dict(classes=('background', 'object'),
                    palette=[[0, 0, 0], [255, 0, 0]])
    #: the refs files listed when ``split_file`` is missing
    SPLIT_FILE_GLOB = 'refs(*).p'

    def __init__(self,
                 data_root: str,
                 ann_file: str,
                 split_file: str,
                 split: str = 'train',
                 data_prefix: Optional[dict] = None,
                 pipeline: Sequence = (),
                 test_mode: bool = False,
                 shuffle_sentences: bool = False,
                 shuffle_seed: int = 0,
                 check_images: bool = True,
                 **kwargs: Any) -> None:
        if split not in KNOWN_SPLITS:
            raise ValueError(
                f'split must be one of {list(KNOWN_SPLITS)}, got {split!r}')
        self.split_file = split_file
        self.split = split
        self.shuffle_sentences = shuffle_sentences
        self.shuffle_seed = shuffle_seed
        self.check_images = check_images
        # (seed, epoch) in shared memory: set in the main process, read by
        # the dataloader workers, persistent ones included
        self._draw_state = torch.zeros(2, dtype=torch.int64).share_memory_()
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix or dict(img_path=''),
            pipeline=list(pipeline),
            test_mode=test_mode,
            **kwargs)

    def _join_prefix(self) -> None:
        """Joins ``split_file`` to ``data_root`` too (called by __init__)."""
        if self.split_file and not osp.isabs(self.split_file) \
                and self.data_root:
            self.split_file = osp.join(self.data_root, self.split_file)
        super()._join_prefix()

    # ------------------------------------------------------------------
    # loading
    # ------------------------------------------------------------------
    def full_init(self) -> None:
        """Loads, filters and serialises the data list (mmengine's), with the
        garbage collector paused."""
        with _gc_paused():
            try:
                super().full_init()
            except RecursionError:
                # what the checks did not see (e.g. a deep value in a field
                # that is only copied) fails in serialising the data list
                raise ValueError(
                    f'{self.ann_file} or {self.split_file} holds a value '
                    'nested too deeply to handle (not a REFER file)') from None

    def load_data_list(self) -> List[dict]:
        """Reads the REFER files and validates them (called by full_init).

        Returns:
            one dict per referent (training) or per sentence (test mode).
        """
        if self.data_root and not osp.isdir(self.data_root):
            raise _missing('data_root', self.data_root)
        if not osp.isfile(self.ann_file):
            raise _missing('ann_file', self.ann_file)
        if not osp.isfile(self.split_file):
            present = sorted(osp.basename(p) for p in glob.glob(
                osp.join(osp.dirname(self.split_file), self.SPLIT_FILE_GLOB)))
            raise FileNotFoundError(
                f'split_file not found: {self.split_file}; REFER files in '
                f'that folder: {present or "none"} ({README_HINT})')
        images, anns = self.load_instances(self.ann_file)
        refs = load_json(self.split_file) if self.split_file.endswith('.json') \
            else load_refer_pickle(self.split_file)
        if not isinstance(refs, list):
            raise ValueError(f'{self.split_file} must hold a list of refs, '
                             f'got {type(refs).__name__}')

        img_prefix = self.data_prefix.get('img_path', '') or ''
        data_list: List[dict] = []
        splits_present = set()
        used_images: Dict[int, str] = {}
        empty_sents: List[Tuple[Any, Any]] = []
        for n, ref in enumerate(refs):
            try:
                ref_split = ref['split']
            except (TypeError, KeyError):
                raise ValueError(f'{self.split_file}: ref #{n} has no key '
                                 "'split' (not a REFER ref dict)") from None
            if type(ref_split) is not str:
                # a deep tuple here would crash the interpreter when hashed
                raise ValueError(f'{self.split_file}: ref #{n} has a split '
                                 f'of type {type(ref_split).__name__}, not str')
            splits_present.add(ref_split)
            if ref_split != self.split:
                continue
            info = self.parse_ref(ref, n, images, anns, img_prefix)
            used_images[info['image_id']] = info['img_path']
            data_list.append(info)
            empty_sents.extend((info['ref_id'], s['sent_id'])
                               for s in info['sentences'] if not s['text'].strip())

        if not data_list:
            raise ValueError(
                f'{self.split_file} has no ref of split {self.split!r}; '
                f'splits present: {sorted(map(str, splits_present))}')
        if empty_sents:
            listed = ', '.join(f'ref_id {r} sent_id {s}'
                               for r, s in empty_sents[:MAX_LISTED])
            more = len(empty_sents) - MAX_LISTED
            warnings.warn(
                f'{self.split_file}: {len(empty_sents)} empty sentences in '
                f'split {self.split!r} (the model sees only the start and end '
                f'tokens): {listed}' + (f' and {more} more' if more > 0 else ''),
                stacklevel=2)
        if self.check_images:
            self._check_images(used_images)
        if self.test_mode:
            data_list = [dict(info, sent_id=s['sent_id'], text=s['text'])
                         for info in data_list
                         for s in info.pop('sentences')]
        if self.shuffle_sentences:
            self._shuffle(data_list)
        return data_list

    def load_instances(self, path: str) -> Tuple[Dict[int, dict],
                                                 Dict[int, dict]]:
        """Returns ({image_id: image}, {ann_id: annotation}) of instances.json.

        Called by :meth:`load_data_list`, and by
        ``tools/dataset_converters/check_refer.py`` (which checks a download
        with the loader's own checks).
        """
        inst = load_json(path)
        if not isinstance(inst, dict):
            raise ValueError(f'{path} must hold a JSON object with '
                             f"'images' and 'annotations'")
        for key in ('images', 'annotations'):
            if not isinstance(inst.get(key), list):
                raise ValueError(f"{path} has no list under key '{key}'")
        try:
            images = {img['id']: img for img in inst['images']}
            anns = {ann['id']: ann for ann in inst['annotations']}
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: an image or annotation has no key "
                             f"{e}") from None
        for kind, table, items in (('image', images, inst['images']),
                                   ('annotation', anns, inst['annotations'])):
            if len(table) != len(items):
                seen: set = set()
                dup = next(x['id'] for x in items
                           if x['id'] in seen or seen.add(x['id']))
                raise ValueError(f'{path}: {kind} id {dup} appears more than '
                                 'once')
        return images, anns

    def parse_ref(self, ref: dict, n: int, images: Dict[int, dict],
                  anns: Dict[int, dict], img_prefix: str) -> dict:
        """Validates ref #``n`` and returns its data info (with 'sentences').

        Called by :meth:`load_data_list` for each ref of the split, and by
        ``tools/dataset_converters/check_refer.py`` for every ref (so that it
        lists every bad ref, not only the first); raises ValueError naming
        the ref, the key and the file at fault.
        """
        where = f'{self.split_file}: ref #{n}'
        try:
            ref_id, ann_id, image_id = (ref['ref_id'], ref['ann_id'],
                                        ref['image_id'])
            sentences = ref['sentences']
        except KeyError as e:
            raise ValueError(f'{where} has no key {e}') from None
        for key, value in (('ref_id', ref_id), ('image_id', image_id)):
            _check_id(value, f'{where}: {key}')
        where = f'{self.split_file}: ref_id {ref_id}'
        img = images.get(image_id)
        if img is None:
            raise ValueError(f'{where}: image_id {image_id} is not in '
                             f'{self.ann_file} images')
        if not isinstance(sentences, list) or not sentences:
            raise ValueError(f"{where} has an empty 'sentences' list")
        try:
            sents = [dict(sent_id=s['sent_id'], text=s['sent'])
                     for s in sentences]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: a sentence has no key {e} "
                             "(need 'sent_id' and 'sent')") from None
        for s in sents:
            if not isinstance(s['sent_id'], ID_TYPES) \
                    or isinstance(s['sent_id'], bool):
                raise ValueError(f'{where}: a sent_id is of type '
                                 f"{type(s['sent_id']).__name__}, not int or str")
            if not isinstance(s['text'], str):
                raise ValueError(
                    f"{where}: sent_id {s['sent_id']} has a 'sent' of type "
                    f"{type(s['text']).__name__}, not str")
        try:
            height = _image_side(img['height'])
            width = _image_side(img['width'])
            file_name = img['file_name']
        except KeyError as e:
            raise ValueError(f'{self.ann_file}: image {image_id} has no '
                             f'key {e}') from None
        except ValueError as e:
            raise ValueError(f'{self.ann_file}: image {image_id}: {e}') \
                from None
        # The ref's own 'file_name' carries an '_<ann_id>' suffix in REFER;
        # the image file is the one named in instances.json.
        return dict(
            img_path=osp.join(img_prefix, file_name),
            image_id=image_id, ref_id=ref_id, height=height, width=width,
            **self.parse_targets(ref, where, anns, height, width),
            sentences=sents, seg_fields=[])

    def parse_targets(self, ref: dict, where: str, anns: Dict[int, dict],
                      height: int, width: int) -> dict:
        """Returns the referent's fields of a validated ref: ``ann_id``,
        ``category_id``, ``segmentation``, ``no_target`` (False) and
        ``num_targets`` (1). Called by :meth:`parse_ref`; raises ValueError
        starting with ``where`` (the ref) or naming the annotation."""
        ann_id = ref['ann_id']
        ann = self._find_ann(ann_id, where, anns, ref['image_id'])
        seg = ann.get('segmentation')
        validate_segmentation(seg, height, width,
                              f'{self.ann_file}: annotation {ann_id}')
        return dict(ann_id=ann_id, segmentation=seg, no_target=False,
                    num_targets=1,
                    category_id=ref.get('category_id', ann.get('category_id')))

    def _find_ann(self, ann_id: Any, where: str, anns: Dict[int, dict],
                  image_id: Any) -> dict:
        """Returns annotation ``ann_id`` of instances.json; raises ValueError
        (starting with ``where``) unless it is an id there, of ``image_id``."""
        _check_id(ann_id, f'{where}: ann_id')
        ann = anns.get(ann_id)
        if ann is None:
            raise ValueError(f'{where}: ann_id {ann_id} is not in '
                             f'{self.ann_file} annotations')
        if ann.get('image_id') != image_id:
            raise ValueError(
                f'{where}: ann_id {ann_id} belongs to image_id '
                f'{ann.get("image_id")} in {self.ann_file}, not {image_id}')
        return ann

    def _check_images(self, used_images: Dict[int, str]) -> None:
        """Checks once per unique image that its file exists and is not
        empty (a zero-byte file fails in OpenCV without naming the file)."""
        missing = [p for p in used_images.values() if not osp.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f'{len(missing)} of {len(used_images)} images of split '
                f'{self.split!r} not found, first: {missing[0]} '
                f'({README_HINT})')
        empty = [p for p in used_images.values() if osp.getsize(p) == 0]
        if empty:
            raise ValueError(
                f'{len(empty)} of {len(used_images)} image files of split '
                f'{self.split!r} are empty (0 bytes), first: {empty[0]} '
                f'({README_HINT})')

    def _shuffle(self, data_list: List[dict]) -> None:
        """Moves the text of every sample to another sample, in place.

        A random order of the samples (seeded) is rotated by one, so the
        permutation has no fixed point: no sample keeps its own text (in test
        mode a sample may receive another sentence of its own referent).
        """
        keys = ('sent_id', 'text') if self.test_mode else ('sentences',)
        n = len(data_list)
        if n < 2:
            return
        order = np.random.default_rng(self.shuffle_seed).permutation(n)
        texts = [{k: data_list[j][k] for k in keys} for j in order]
        for pos, j in enumerate(order):
            data_list[j].update(texts[(pos + 1) % n])

    # ------------------------------------------------------------------
    # fetching
    # ------------------------------------------------------------------
    def set_epoch(self, epoch: int, seed: int = 0) -> None:
        """Sets the epoch and seed of the training sentence draw; called by
        :class:`~sera_mm.engine.hooks.EpochSeedHook` before each epoch."""
        self._draw_state.copy_(torch.tensor([seed, epoch]))

    def get_data_info(self, idx: int) -> dict:
        """Returns the data info of sample ``idx`` (called on every fetch).

        In training the sentence is drawn here from (seed, epoch, ``idx``);
        the referent's other sentences are dropped from the result. In a
        dataloader worker Python's, NumPy's and torch's global generators
        are then seeded from the same triple, so random transforms of the
        pipeline repeat with the draw.
        """
        info = super().get_data_info(idx)
        if not self.test_mode:
            seed, epoch = (int(v) for v in self._draw_state)
            streams = np.random.SeedSequence([seed, epoch, idx]).spawn(2)
            sents = info.pop('sentences')
            s = sents[int(np.random.default_rng(streams[0]).integers(len(sents)))]
            info['sent_id'], info['text'] = s['sent_id'], s['text']
            if torch.utils.data.get_worker_info() is not None:
                # in the main process (num_workers=0) the generators belong
                # to the training step and EpochSeedHook seeds them instead
                # torch.manual_seed, not mmengine's set_random_seed: in a
                # worker forked from a CUDA process only torch's skips CUDA
                pipeline_seed = int(streams[1].generate_state(1)[0])
                random.seed(pipeline_seed)
                np.random.seed(pipeline_seed)
                torch.manual_seed(pipeline_seed)
        return info


def _check_id(value: Any, what: str) -> None:
    """Raises ValueError (starting with ``what``) unless ``value`` is an id
    of REFER's types (int or str, not bool)."""
    if not isinstance(value, ID_TYPES) or isinstance(value, bool):
        raise ValueError(f'{what} must be an int or str, got '
                         f'{type(value).__name__}')


def _image_side(value: Any) -> int:
    """Returns an image ``height`` / ``width`` as int; raises ValueError
    unless it is a whole number in [1, MAX_IMAGE_SIDE]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 < value <= MAX_IMAGE_SIDE \
            or value != int(value):
        raise ValueError(f'height and width must be whole numbers in [1, '
                         f'{MAX_IMAGE_SIDE}], got {value!r}')
    return int(value)
