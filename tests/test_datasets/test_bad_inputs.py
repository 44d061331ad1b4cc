"""Bad data inputs, one row each: every one fails before a training step (or,
for the image content, at the fetch of that image) with an error that names
the file, key or id at fault.

The data rows build the data set the way the tools do, from the RefCOCO
base config through the registries with its real pipelines, on a copy of the
hand-made REFER set (tests/helpers/refer.py, whose edits
``test_refcoco_errors.py`` also uses to test RefCOCODataset's checks
directly). Rows marked ``needs`` wait for a check the report asks an owner to
add. Bad checkpoints and test-split lists: tests/test_engine/test_runner/
(test_checkpoint_match.py, test_split_spec.py); unknown types in a config:
tests/test_configs/test_unknown_types.py.
"""
import os.path as osp
import pickle
from typing import Callable, NamedTuple, Optional, Sequence, Type

import pytest
from mmengine.config import Config

from sera_mm.registry import DATASETS
from helpers.paths import REPO
from helpers.refer import (deep_instances_json, deep_refs_pickle, edit_first_ref, image_file,
                           instances_not_json, malicious_refs_pickle, remove_image,
                           set_segmentation, truncate_instances, write_refer)

DATA_CONFIG = osp.join(REPO, 'configs', '_base_', 'datasets', 'refcoco.py')
NEEDS = ('needs the check proposed for {0} (helper report); drop this mark '
         'when it is applied')


@pytest.fixture(scope='module', autouse=True)
def _registered():
    from sera_mm import register_all_modules
    register_all_modules()


def build_dataset(root: str, mode: str = 'train', **overrides):
    """The base config's train (or test) dataset on ``root``, built through
    the registry with its pipeline, as the Runner builds it."""
    cfg = Config.fromfile(DATA_CONFIG)
    loader = cfg.train_dataloader if mode == 'train' else cfg.test_dataloader
    ds_cfg = dict(loader.dataset)
    ds_cfg.update(data_root=root + '/', split='train')
    ds_cfg.update(overrides)
    return DATASETS.build(ds_cfg)


def fetch_first(root: str, mode: str = 'train') -> None:
    """Builds the data set and fetches sample 0 (ref 11, image 1)."""
    build_dataset(root, mode)[0]


def _image_path(root: str) -> str:
    return osp.join(root, 'train2014', image_file(1))


def _write_image_bytes(data: bytes) -> Callable[[str], None]:
    def edit(root):
        with open(_image_path(root), 'wb') as f:
            f.write(data)
    return edit


def _truncate_image(root):
    path = _image_path(root)
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


def _resize_image(root):
    """An image file whose size differs from what instances.json says."""
    import numpy as np
    from PIL import Image
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(_image_path(root))


def _duplicate_image_id(inst):
    inst['images'].append(dict(inst['images'][0], file_name='other.jpg'))


def _set_image_1(**fields):
    def edit(inst):
        inst['images'][0].update(fields)
    return edit


def _compressed_rle(h: int, w: int, size) -> dict:
    """pycocotools' compressed RLE of an h x w mask, labelled ``size``."""
    import numpy as np
    from pycocotools import mask as mask_utils
    m = np.zeros((h, w), np.uint8, order='F')
    m[2:6, 3:9] = 1
    rle = mask_utils.encode(m)
    return dict(size=list(size), counts=rle['counts'].decode('ascii'))


def _first_sent(**fields):
    return edit_first_ref(lambda r: r['sentences'][0].update(fields))


class Row(NamedTuple):
    """One bad input: edits of the REFER copy, then ``act``."""
    act: Callable[[str], None]
    error: Type[BaseException]
    words: Sequence[str]
    edit_instances: Optional[Callable] = None
    edit_refs: Optional[Callable] = None
    edit_files: Optional[Callable] = None
    needs: Optional[str] = None  # the owner's file whose check is missing


ROWS = {
    'truncated instances.json': Row(
        build_dataset, ValueError, ['instances.json', 'JSON'],
        edit_files=truncate_instances),
    'instances.json not JSON': Row(
        build_dataset, ValueError, ['instances.json', 'JSON'],
        edit_files=instances_not_json),
    'ref ann_id not in instances.json': Row(
        build_dataset, ValueError, ['refs(unc).p', 'ref_id 11', 'ann_id 999'],
        edit_refs=edit_first_ref(lambda r: r.update(ann_id=999))),
    'ref image_id not in instances.json': Row(
        build_dataset, ValueError, ['ref_id 11', 'image_id 77'],
        edit_refs=edit_first_ref(lambda r: r.update(image_id=77))),
    'polygon with an odd coordinate count': Row(
        build_dataset, ValueError, ['annotation 101', '7 coordinates'],
        edit_instances=set_segmentation(101, [[1, 2, 3, 4, 5, 6, 7]])),
    'polygon of two points': Row(
        build_dataset, ValueError, ['annotation 101', '4 coordinates'],
        edit_instances=set_segmentation(101, [[1, 1, 5, 5]])),
    'RLE size differs from the image': Row(
        build_dataset, ValueError, ['annotation 101', 'RLE size [3, 4]'],
        edit_instances=set_segmentation(101, dict(size=[3, 4], counts=[12]))),
    'polygon with a NaN coordinate': Row(
        build_dataset, ValueError, ['instances.json', 'annotation 101', 'nan'],
        edit_instances=set_segmentation(101, [[2, 2, float('nan'), 2, 2, 15]])),
    'polygon with an infinite coordinate': Row(
        build_dataset, ValueError, ['instances.json', 'annotation 101', 'inf'],
        edit_instances=set_segmentation(101, [[2, 2, 20, float('-inf'), 2, 15]])),
    'polygon far outside the image': Row(
        build_dataset, ValueError, ['instances.json', 'annotation 101', '1000000000.0', '76'],
        edit_instances=set_segmentation(101, [[2, 2, 1e9, 2, 2, 15]])),
    'polygon with a coordinate that is not a number': Row(
        build_dataset, ValueError, ['instances.json', 'annotation 101', 'not a number'],
        edit_instances=set_segmentation(101, [[2, 2, '20', 2, 2, 15]])),
    'uncompressed RLE whose counts do not cover the image': Row(
        build_dataset, ValueError, ['instances.json', 'annotation 101', '12 pixels', '600'],
        edit_instances=set_segmentation(101, dict(size=[20, 30], counts=[12]))),
    'uncompressed RLE with a negative count': Row(
        build_dataset, ValueError, ['instances.json', 'annotation 101', 'non-negative'],
        edit_instances=set_segmentation(101, dict(size=[20, 30], counts=[700, -100]))),
    'compressed RLE whose counts do not cover the image': Row(
        build_dataset, ValueError, ['instances.json', 'annotation 101', '300 pixels', '600'],
        edit_instances=set_segmentation(101, _compressed_rle(20, 15, (20, 30)))),
    'compressed RLE cut inside a number': Row(
        build_dataset, ValueError, ['instances.json', 'annotation 101', 'inside a number'],
        edit_instances=set_segmentation(101, dict(size=[20, 30], counts='2P'))),
    'sentence that is not a string': Row(
        build_dataset, ValueError, ['refs(unc).p', 'ref_id 11', 'sent_id 1000', 'NoneType'],
        edit_refs=_first_sent(sent=None)),
    'sentence as a list of words': Row(
        build_dataset, ValueError, ['refs(unc).p', 'ref_id 11', 'sent_id 1000', 'list'],
        edit_refs=_first_sent(sent=['the', 'left', 'triangle'])),
    'image height zero': Row(
        build_dataset, ValueError, ['instances.json', 'image 1', '0'],
        edit_instances=_set_image_1(height=0)),
    'image width negative': Row(
        build_dataset, ValueError, ['instances.json', 'image 1', '-30'],
        edit_instances=_set_image_1(width=-30)),
    'image width a string': Row(
        build_dataset, ValueError, ['instances.json', 'image 1', "'30'"],
        edit_instances=_set_image_1(width='30')),
    'image height fractional': Row(
        build_dataset, ValueError, ['instances.json', 'image 1', '20.5'],
        edit_instances=_set_image_1(height=20.5)),
    'image height beyond any image format': Row(
        build_dataset, ValueError, ['instances.json', 'image 1', '1000000000'],
        edit_instances=_set_image_1(height=10**9)),
    'instances.json nested too deeply': Row(
        build_dataset, ValueError, ['instances.json', 'nested too deeply'],
        edit_files=deep_instances_json()),
    'refs pickle with a deeply nested ref_id': Row(
        build_dataset, ValueError, ['refs(unc).p', 'ref #0', 'ref_id', 'list'],
        edit_files=deep_refs_pickle('ref_id')),
    'refs pickle with a deeply nested split': Row(
        build_dataset, ValueError, ['refs(unc).p', 'ref #0', 'split', 'list'],
        edit_files=deep_refs_pickle('split')),
    'refs pickle with a deeply nested copied field': Row(
        build_dataset, ValueError, ['refs(unc).p', 'nested too deeply'],
        edit_files=deep_refs_pickle('category_id')),
    'empty sentence list': Row(
        build_dataset, ValueError, ['ref_id 11', "'sentences'"],
        edit_refs=edit_first_ref(lambda r: r.update(sentences=[]))),
    'missing image': Row(
        build_dataset, FileNotFoundError, [image_file(1)],
        edit_files=remove_image),
    'corrupt image (not an image)': Row(
        fetch_first, AssertionError, [image_file(1)],
        edit_files=_write_image_bytes(b'\x00 not an image ' * 20)),
    'truncated image': Row(
        fetch_first, AssertionError, [image_file(1)],
        edit_files=_truncate_image),
    'empty image file': Row(
        build_dataset, ValueError, [image_file(1), 'empty'],
        edit_files=_write_image_bytes(b'')),
    'image size differs from instances.json': Row(
        fetch_first, ValueError, [image_file(1), 'ann_id 101', '(20, 30)'],
        edit_files=_resize_image),
    'image size differs from instances.json (test pipeline)': Row(
        lambda root: fetch_first(root, 'test'), ValueError,
        [image_file(1), 'ann_id 101', '(20, 30)'], edit_files=_resize_image),
    'image id twice in instances.json': Row(
        build_dataset, ValueError, ['instances.json', 'image id 1'],
        edit_instances=_duplicate_image_id),
    'split that no ref has': Row(
        lambda root: build_dataset(root, split='test'), ValueError,
        ["'test'", 'splits present'],
        edit_refs=lambda refs: refs.pop()),  # ref 51, the only 'test' one
    'unknown split-by file name': Row(
        lambda root: build_dataset(root, split_file='refcoco/refs(ucn).p'),
        FileNotFoundError, ['refs(ucn).p', 'refs(unc).p']),
    'refs pickle crafted to run code': Row(
        build_dataset, pickle.UnpicklingError, ['refs(unc).p'],
        edit_files=malicious_refs_pickle),
    'unknown transform in the pipeline': Row(
        lambda root: build_dataset(root, pipeline=[
            dict(type='LoadImageFromFlie')]), KeyError,
        ['LoadImageFromFlie']),
    'data_root that does not exist': Row(
        lambda root: build_dataset(root + '/nowhere'),
        FileNotFoundError, ['nowhere']),
}


def _params():
    for name, row in ROWS.items():
        marks = [pytest.mark.xfail(strict=True, reason=NEEDS.format(
            row.needs))] if row.needs else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize('name', list(_params()))
def test_bad_data_input_names_the_culprit(tmp_path, name):
    row = ROWS[name]
    root = write_refer(str(tmp_path), edit_instances=row.edit_instances,
                       edit_refs=row.edit_refs)
    if row.edit_files:
        row.edit_files(root)
    with pytest.raises(row.error) as e:
        row.act(root)
    for word in row.words:
        assert word in str(e.value), (word, str(e.value))
    assert not osp.exists(osp.join(root, 'pwned'))  # the crafted pickle
