"""Training on RefCOCO + RefCOCO+ + RefCOCOg at once, without test leakage."""
import copy
import os.path as osp
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Set

from mmengine.dataset import BaseDataset, ConcatDataset
from mmengine.logging import print_log

from sera_mm.registry import DATASETS
from .refer_pickle import load_refer_pickle


@DATASETS.register_module()
class MixedRefCOCODataset(ConcatDataset):
    """The union of the train splits of several REFER sets, minus every
    referent whose image is in an evaluation split of any of them.

    The REFER sets split COCO's train2014 images differently (RefCOCO and
    RefCOCO+ share the unc partition, RefCOCOg has its own), so about a tenth
    of RefCOCOg's training images are RefCOCO val / testA / testB images and
    the other way round. Here the images of every source's refs outside its
    training split are held out, and each training source, a
    :class:`~sera_mm.datasets.RefCOCODataset` (its checks, sentence draw and
    pipeline), keeps only the referents on other images; the sources are
    concatenated by mmengine's :class:`ConcatDataset`. :attr:`removal_report`
    (also logged) says per source how many referents were removed and why
    (the held-out splits of the image).

    Args:
        sources (Sequence[dict]): One dict per REFER set: ``name`` (unique,
            e.g. ``'refcocog'``), ``ann_file``, ``split_file``, optionally
            ``split`` (the training split, default ``'train'``), ``train``
            (False: the set only contributes held-out images, e.g. RefCOCOg
            google's val; default True) and any other RefCOCODataset
            argument.
        data_root (str): Default ``data_root`` of the sources.
        data_prefix (dict, optional): Default ``data_prefix`` of the sources.
        pipeline (Sequence[dict]): Default pipeline of the sources.
        holdout_splits (Sequence[str], optional): The splits whose images
            are held out. Defaults to None: every split of a source other
            than its training split.
        lazy_init (bool): Defer loading until first use. Defaults to False.
        **kwargs: Further defaults for every source (e.g. ``check_images``).
    """

    def __init__(self,
                 sources: Sequence[dict],
                 data_root: str = '',
                 data_prefix: Optional[dict] = None,
                 pipeline: Sequence = (),
                 holdout_splits: Optional[Sequence[str]] = None,
                 lazy_init: bool = False,
                 **kwargs: Any) -> None:
        if isinstance(sources, dict) or not sources:
            raise ValueError('MixedRefCOCODataset: sources must be a '
                             f'non-empty list of dicts, got {sources!r}')
        self.holdout_splits = None if holdout_splits is None \
            else tuple(holdout_splits)
        self.source_names: List[str] = []  # the training sources, in order
        self._split_files: Dict[str, str] = {}  # every source
        self._train_splits: Dict[str, str] = {}
        self.removal_report: Dict[str, dict] = {}
        datasets = []
        for i, src in enumerate(sources):
            src = copy.deepcopy(dict(src))
            name = src.pop('name', None)
            if not isinstance(name, str) or not name:
                raise ValueError(f'MixedRefCOCODataset: sources[{i}] has no '
                                 f"'name': {src!r}")
            if name in self._split_files:
                raise ValueError(f'MixedRefCOCODataset: source name {name!r} '
                                 'is given twice')
            if 'split_file' not in src:
                raise ValueError(f"MixedRefCOCODataset: source {name!r} has "
                                 "no 'split_file'")
            train = src.pop('train', True)
            cfg = dict(type='RefCOCODataset', data_root=data_root,
                       data_prefix=data_prefix, pipeline=list(pipeline),
                       split='train', test_mode=False)
            cfg.update(kwargs)
            cfg.update(src)
            if cfg['test_mode']:
                raise ValueError(f'MixedRefCOCODataset: source {name!r} has '
                                 'test_mode=True; a training set needs False')
            split_file = cfg['split_file']
            root = cfg.get('data_root') or ''
            if root and not osp.isabs(split_file):
                split_file = osp.join(root, split_file)
            self._split_files[name] = split_file
            self._train_splits[name] = cfg['split']
            if self.holdout_splits and cfg['split'] in self.holdout_splits:
                raise ValueError(
                    f"MixedRefCOCODataset: source {name!r} trains on split "
                    f"{cfg['split']!r}, which holdout_splits holds out")
            if train:
                cfg['lazy_init'] = True  # filtered in full_init
                datasets.append(DATASETS.build(cfg))
                self.source_names.append(name)
        if not datasets:
            raise ValueError('MixedRefCOCODataset: no source has train=True')
        super().__init__(datasets, lazy_init=lazy_init)

    def full_init(self) -> None:
        """Loads the sources, removes the held-out referents, concatenates.

        Called by ``__init__`` (unless ``lazy_init``) or on first use.
        """
        if self._fully_initialized:
            return
        held_out = self._held_out_images()
        for name, dataset in zip(self.source_names, self.datasets):
            dataset.full_init()
            self._remove_held_out(name, dataset, held_out)
        super().full_init()

    def _held_out_images(self) -> Dict[Any, Set[str]]:
        """``{image_id: {'<source>/<split>', ...}}`` of every held-out ref."""
        held_out: Dict[Any, Set[str]] = {}
        for name, path in self._split_files.items():
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'MixedRefCOCODataset: split_file of source {name!r} not '
                    f"found: {path} (see the README section 'Data "
                    "preparation')")
            refs = load_refer_pickle(path)
            if not isinstance(refs, list):
                raise ValueError(f'{path} must hold a list of refs, got '
                                 f'{type(refs).__name__}')
            for n, ref in enumerate(refs):
                try:
                    split, image_id = ref['split'], ref['image_id']
                except (TypeError, KeyError) as e:
                    raise ValueError(f'{path}: ref #{n} has no key {e}') \
                        from None
                if type(split) is not str or type(image_id) not in (int, str):
                    # a deep tuple here would crash the interpreter when hashed
                    raise ValueError(
                        f'{path}: ref #{n} needs a str split and an int or str '
                        f'image_id, got {type(split).__name__} and '
                        f'{type(image_id).__name__}')
                if split == self._train_splits[name]:
                    continue
                if self.holdout_splits is None or split in self.holdout_splits:
                    held_out.setdefault(image_id, set()).add(f'{name}/{split}')
        return held_out

    def _remove_held_out(self, name: str, dataset: BaseDataset,
                         held_out: Dict[Any, Set[str]]) -> None:
        """Keeps the referents of ``dataset`` whose image is not held out;
        records and logs what was removed."""
        keep: List[int] = []
        reasons: Counter = Counter()
        total = len(dataset)
        for i in range(total):
            # BaseDataset's get_data_info: RefCOCODataset's own would draw a
            # sentence and so move the global random state.
            image_id = BaseDataset.get_data_info(dataset, i)['image_id']
            why = held_out.get(image_id)
            if why:
                reasons.update(why)
            else:
                keep.append(i)
        if not keep:
            raise ValueError(
                f'MixedRefCOCODataset: every training referent of source '
                f'{name!r} is on a held-out image; check its split_file '
                f'{self._split_files[name]}')
        if len(keep) < total:
            dataset.get_subset_(keep)
        report = dict(total=total, kept=len(keep), removed=total - len(keep),
                      reasons=dict(sorted(reasons.items())))
        self.removal_report[name] = report
        why = ', '.join(f'{k}: {v}' for k, v in report['reasons'].items())
        print_log(
            f'MixedRefCOCODataset: {name}: kept {report["kept"]} of {total} '
            f'training referents, removed {report["removed"]} whose image is '
            f'held out' + (f' (image in {why}; a referent counts under every '
                           'split its image is in)' if why else ''),
            logger='current')
