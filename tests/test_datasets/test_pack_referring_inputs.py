"""The whole pipeline on the hand-made set, ending in PackReferringInputs."""
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmseg.structures import SegDataSample

from sera_mm.datasets import RefCOCODataset
from sera_mm.datasets.transforms import decode_segmentation, undo_letterbox
from sera_mm.registry import TRANSFORMS

from .refer_fixture import dataset_cfg

TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Letterbox', scale=64),
    dict(type='LoadReferringMask'),
    dict(type='TokenizeText', context_length=17),
    dict(type='PackReferringInputs'),
]
TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadReferringMask'),
    dict(type='Letterbox', scale=64),
    dict(type='TokenizeText', context_length=17),
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
        assert 'text_tokens' in sample.keys()
        assert sample.text_tokens.shape == (17,)
        moved = sample.to(torch.int32)  # .to() reaches the tokens
        assert moved.text_tokens.dtype == torch.int32


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


def test_missing_tokens_is_named():
    t = TRANSFORMS.build(dict(type='PackReferringInputs'))
    with pytest.raises(KeyError, match='TokenizeText'):
        t(dict(img=np.zeros((4, 4, 3), np.uint8)))
