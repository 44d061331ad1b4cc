"""LoadReferringMask equals pycocotools' own decoding."""
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sera_mm.registry import TRANSFORMS

from helpers.refer import IMAGES, annotation_table


def _reference(seg, h, w):
    """pycocotools' documented route: frPyObjects (+ merge), decode."""
    if isinstance(seg, dict) and isinstance(seg['counts'], str):
        return mask_utils.decode(seg)
    rles = mask_utils.frPyObjects(seg, h, w)
    rle = mask_utils.merge(rles) if isinstance(rles, list) else rles
    return mask_utils.decode(rle)


@pytest.mark.parametrize('ann', annotation_table(), ids=lambda a: str(a['id']))
def test_decoding_matches_pycocotools(ann):
    h, w = IMAGES[ann['image_id']]
    t = TRANSFORMS.build(dict(type='LoadReferringMask'))
    out = t(dict(segmentation=ann['segmentation'], height=h, width=w))
    mask = out['gt_seg_map']
    assert mask.dtype == np.uint8 and mask.shape == (h, w)
    assert set(np.unique(mask)) <= {0, 1} and mask.sum() > 0
    np.testing.assert_array_equal(mask, _reference(ann['segmentation'], h, w))
    assert out['seg_fields'] == ['gt_seg_map']


def test_rle_kinds_give_the_hand_made_rectangles():
    anns = {a['id']: a for a in annotation_table()}
    t = TRANSFORMS.build(dict(type='LoadReferringMask'))
    want = np.zeros((24, 16), np.uint8)
    want[3:10, 4:12] = 1  # compressed RLE of ann 201
    got = t(dict(segmentation=anns[201]['segmentation'], height=24, width=16))
    np.testing.assert_array_equal(got['gt_seg_map'], want)
    want = np.zeros((24, 16), np.uint8)
    want[12:20, 2:6] = 1  # uncompressed RLE of ann 202
    got = t(dict(segmentation=anns[202]['segmentation'], height=24, width=16))
    np.testing.assert_array_equal(got['gt_seg_map'], want)


def test_compressed_rle_with_bytes_counts():
    m = np.zeros((9, 7), np.uint8)
    m[2:5, 1:6] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    assert isinstance(rle['counts'], bytes)
    t = TRANSFORMS.build(dict(type='LoadReferringMask'))
    out = t(dict(segmentation=rle, height=9, width=7))
    np.testing.assert_array_equal(out['gt_seg_map'], m)


def test_multi_part_polygon_is_the_union_of_its_parts():
    ann = [a for a in annotation_table() if a['id'] == 102][0]
    h, w = IMAGES[1]
    t = TRANSFORMS.build(dict(type='LoadReferringMask'))
    whole = t(dict(segmentation=ann['segmentation'], height=h,
                   width=w))['gt_seg_map']
    parts = [t(dict(segmentation=[p], height=h, width=w))['gt_seg_map']
             for p in ann['segmentation']]
    assert all(p.sum() > 0 for p in parts)
    np.testing.assert_array_equal(whole, np.maximum(*parts))


def test_missing_key_is_named():
    t = TRANSFORMS.build(dict(type='LoadReferringMask'))
    with pytest.raises(KeyError, match='height'):
        t(dict(segmentation=[[0, 0, 1, 0, 1, 1]], width=3))


@pytest.mark.parametrize('seg, words', [
    (dict(size=[20, 30], counts=[12]), ['12 pixels', '600']),
    (dict(size=[20, 30], counts='2P'), ['inside a number']),
    ([[2, 2, 1e9, 2, 2, 15]], ['polygon 0', '1000000000.0']),
    ([[2, 2, float('nan'), 2, 2, 15]], ['polygon 0', 'nan']),
    ([[2, 2, 10**400, 2, 2, 15]], ['polygon 0', 'must be finite']),
    ([[2, 2, float('inf'), float('-inf'), 2, 15]], ['polygon 0', 'inf']),
    ([[2, 2, [3], 2, 2, 15]], ['polygon 0', 'not a number']),
])
def test_unsafe_segmentation_is_refused_before_pycocotools(seg, words):
    """Outside RefCOCODataset too: pycocotools would decode a short RLE from
    memory it never wrote and rasterise a far-off point without bound."""
    load = TRANSFORMS.build(dict(type='LoadReferringMask'))
    with pytest.raises(ValueError) as e:
        load(dict(segmentation=seg, height=20, width=30, ann_id=7,
                  img_path='x.jpg'))
    for word in ['ann_id 7', 'x.jpg'] + words:
        assert word in str(e.value), (word, str(e.value))


@pytest.mark.parametrize('counts, words', [
    ('0é', ['byte 0xc3']), ('0 1', ['byte 0x20']), ('5N', ['negative run']),
    ('oooooooo0', ['more than 7 digits']), (b'2P', ['inside a number']),
])
def test_malformed_compressed_rle_is_refused(counts, words):
    from sera_mm.datasets.transforms import load_referring_mask
    with pytest.raises(ValueError) as e:
        load_referring_mask.validate_segmentation(
            dict(size=[4, 5], counts=counts), 4, 5, where='ann 3')
    for word in ['ann 3'] + words:
        assert word in str(e.value), (word, str(e.value))


def test_compressed_rle_length_matches_pycocotools():
    from sera_mm.datasets.transforms.load_referring_mask import _rle_length
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(m))
        assert _rle_length(rle['counts']) == h * w
        assert _rle_length(rle['counts'].decode('ascii')) == h * w
