"""The whole pipeline on the hand-made set, ending in PackReferringInputs."""
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmseg.structures import SegDataSample

from sera_mm.datasets import RefCOCODataset
from sera_mm.datasets.transforms import decode_segmentation, undo_letterbox
from sera_mm.registry import TRANSFORMS

from helpers.refer import dataset_cfg

TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Letterbox', scale=64),
    dict(type='LoadReferringMask'),
    dict(type='PackReferringInputs'),
]
TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadReferringMask'),
    dict(type='Letterbox', scale=64),
    dict(type='PackReferringInputs'),
]
META = {'img_path', 'ori_shape', 'img_shape', 'letterbox', 'text', 'ref_id',
        'sent_id', 'ann_id', 'image_id'}


def _build(root, pipeline, **kw):
    with DefaultScope.overwrite_default_scope('sera_mm'):
        return RefCOCODataset(**dataset_cfg(root, pipeline=pipeline, **kw))


def test_test_pipeline_keeps_gt_at_original_size(refer_root):
    raw = _build(refer_root, [], split='val', test_mode=True)
    ds = _build(refer_root, TEST_PIPELINE, split='val', test_mode=True)
    for i in range(len(ds)):
        info, packed = raw[i], ds[i]
        assert set(packed) == {'inputs', 'data_samples'}
        assert packed['inputs'].shape == (3, 64, 64)
        assert packed['inputs'].dtype == torch.uint8
        sample = packed['data_samples']
        assert isinstance(sample, SegDataSample)
        assert META <= set(sample.metainfo)
        for key in ('text', 'ref_id', 'sent_id', 'ann_id', 'image_id',
                    'img_path'):
            assert sample.metainfo[key] == info[key]
        h, w = info['height'], info['width']
        assert sample.ori_shape == (h, w) and sample.img_shape == (64, 64)
        gt = sample.gt_sem_seg.data
        assert gt.shape == (1, h, w)
        want = decode_segmentation(info['segmentation'], h, w)
        np.testing.assert_array_equal(gt[0].numpy(), want)
        # the sentence is packed as text: the model's text encoder tokenises it
        assert sample.text == info['text'] and 'text' not in sample.keys()


def test_train_pipeline_letterboxes_gt(refer_root, refer_tables):
    _, refs = refer_tables
    raw = _build(refer_root, [], split='train')
    ds = _build(refer_root, TRAIN_PIPELINE, split='train')
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        info = raw[i]
        gt = sample.gt_sem_seg.data
        assert gt.shape == (1, 64, 64)
        want = decode_segmentation(info['segmentation'], info['height'],
                                   info['width'])
        back = undo_letterbox(gt, sample.metainfo['letterbox'])
        np.testing.assert_array_equal(back[0].numpy(), want)
        ref = refs[sample.metainfo['ref_id']]
        assert (sample.metainfo['sent_id'], sample.metainfo['text']) in {
            (s['sent_id'], s['sent']) for s in ref['sentences']}


def test_missing_sentence_is_named():
    t = TRANSFORMS.build(dict(type='PackReferringInputs'))
    with pytest.raises(KeyError, match="needs 'text', the sentence"):
        t(dict(img=np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(ValueError, match="lack 'text'"):
        TRANSFORMS.build(dict(type='PackReferringInputs', meta_keys=('img_path', )))


SOFT_TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadReferringMask'),
    dict(type='Letterbox', scale=64, mode='affine', soft_masks=True),
    dict(type='PackReferringInputs'),
]


def test_soft_masks_are_packed_as_float32():
    t = TRANSFORMS.build(dict(type='PackReferringInputs'))
    soft = np.array([[0., 0.25, 1.], [0.5, 1 / 255., 0.]], np.float32)
    results = dict(img=np.zeros((2, 3, 3), np.uint8), gt_seg_map=soft, text='a box')
    sample = t(results)['data_samples']
    gt = sample.gt_sem_seg.data
    assert gt.dtype == torch.float32 and gt.shape == (1, 2, 3)
    np.testing.assert_array_equal(gt[0].numpy(), soft)
    assert results['gt_seg_map'] is soft  # the input is not modified
    # float64 is packed as float32; integer maps as int64, as in mmseg
    f64 = t(dict(results, gt_seg_map=soft.astype(np.float64)))['data_samples']
    assert f64.gt_sem_seg.data.dtype == torch.float32
    hard = t(dict(results, gt_seg_map=(soft > 0.3).astype(np.uint8)))['data_samples']
    assert hard.gt_sem_seg.data.dtype == torch.int64
    np.testing.assert_array_equal(hard.gt_sem_seg.data[0].numpy(), soft > 0.3)


def test_train_pipeline_with_detris_soft_masks(refer_root):
    raw = _build(refer_root, [], split='train')
    ds = _build(refer_root, SOFT_TRAIN_PIPELINE, split='train')
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        info = raw[i]
        gt = sample.gt_sem_seg.data
        assert gt.shape == (1, 64, 64) and gt.dtype == torch.float32
        assert 0 <= gt.min() and gt.max() <= 1
        lb = sample.metainfo['letterbox']
        assert lb['mode'] == 'affine'
        want = decode_segmentation(info['segmentation'], info['height'],
                                   info['width'])
        back = undo_letterbox(gt, lb)
        assert back.shape == (1, info['height'], info['width'])
        # upscaled >= 2.6 x: the soft mask's 0.5 contour is the mask's
        np.testing.assert_array_equal((back[0] > 0.5).numpy(), want.astype(bool))
