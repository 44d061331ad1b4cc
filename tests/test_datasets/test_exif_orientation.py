"""A training or test image and its mask are in the same orientation.

The annotation files describe the stored pixels, so the configs read images
without their EXIF orientation (``color_type='color_ignore_orientation'``):
a square image with an EXIF rotation keeps its pixels under its mask. The
same image read with mmcv's default (OpenCV applies the rotation) puts the
object elsewhere, which is what these tests would catch."""
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

import sera_mm
from sera_mm.datasets import RefCOCODataset
from sera_mm.utils.config import leaf_datasets
from helpers.configs import REPO, config_files
from helpers.refer import annotation, dataset_cfg, image_file, write_refer

#: image 3 is 18 x 18; annotation 301 becomes a triangle in its top-left corner
SIDE = 18
CORNER_TRIANGLE = [[1, 1, 11, 1, 1, 7]]
#: EXIF orientation 6: the viewer turns the stored pixels 90 degrees clockwise
ROTATE_90 = 6


@pytest.fixture
def rotated_square(tmp_path):
    """The hand-made set where image 3 is white inside annotation 301 and
    black elsewhere, stored upright with an EXIF tag that rotates it."""
    sera_mm.register_all_modules(init_default_scope=True)

    def edit(inst):
        annotation(inst, 301)['segmentation'] = CORNER_TRIANGLE

    root = write_refer(str(tmp_path), edit_instances=edit)
    from pycocotools import mask as mask_utils
    rle = mask_utils.merge(mask_utils.frPyObjects(CORNER_TRIANGLE, SIDE, SIDE))
    mask = mask_utils.decode(rle).astype(bool)
    pixels = np.where(mask[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    exif = Image.Exif()
    exif[0x0112] = ROTATE_90
    Image.fromarray(pixels).save(osp.join(root, 'train2014', image_file(3)), quality=100,
                                 exif=exif)
    return root


def _config_load_image(test_mode: bool) -> dict:
    """The image loading step of the base data config's training (or test)
    pipeline."""
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/datasets/refcoco.py'))
    loader = cfg.val_dataloader if test_mode else cfg.train_dataloader
    return next(dict(t) for t in loader.dataset.pipeline if t.type == 'LoadImageFromFile')


def _image_under_mask(root, load_image, test_mode):
    pipeline = [load_image, dict(type='LoadReferringMask')]
    ds = RefCOCODataset(**dataset_cfg(root, split='testA', test_mode=test_mode,
                                      pipeline=pipeline))
    out = ds[0]
    assert out['ann_id'] == 301
    mask = out['gt_seg_map'].astype(bool)
    img = out['img'].astype(float)
    return img[mask].mean(), img[~mask].mean()


@pytest.mark.parametrize('test_mode', [False, True])
def test_image_and_mask_share_the_stored_orientation(rotated_square, test_mode):
    inside, outside = _image_under_mask(rotated_square, _config_load_image(test_mode),
                                        test_mode)
    assert inside > 200 and outside < 40, (inside, outside)


def test_the_exif_rotation_would_move_the_object_off_its_mask(rotated_square):
    """The contrast: mmcv's default flag rotates the square image."""
    inside, outside = _image_under_mask(rotated_square, dict(type='LoadImageFromFile'),
                                        test_mode=True)
    assert inside < 120, (inside, outside)


def test_every_config_reads_images_in_the_stored_orientation():
    """Every dataset of every config (training, validation and test, the
    mixed set's parts too) loads its images ignoring the EXIF orientation."""
    checked = 0
    for path in config_files(bases=False):
        cfg = Config.fromfile(osp.join(REPO, path))
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            for dataset in leaf_datasets((cfg.get(loader) or {}).get('dataset')):
                for step in dataset.get('pipeline') or []:
                    if str(step.get('type')).endswith('LoadImageFromFile'):
                        assert step.get('color_type') == 'color_ignore_orientation', \
                            f'{path}: {loader} reads images with {step}'
                        checked += 1
    assert checked > 20
