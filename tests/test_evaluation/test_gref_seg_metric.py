"""Tests of GRefSegMetric: the GRES protocol on hand-made and random masks,
records, the no-target fallback and the evaluator's data path."""
import json
import math

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from sera_mm.evaluation import GRefSegMetric, RefSegMetric
from sera_mm.registry import METRICS

KEYS = {'gIoU', 'cIoU', 'N-acc', 'T-acc', 'Pr@0.7', 'Pr@0.8', 'Pr@0.9'}


def make_sample(gt: np.ndarray, pred: np.ndarray, no_target=None,
                score=None, ref_id: int = 0, sent_id: int = 0) -> dict:
    """A data-sample dict as the evaluator hands it to process()."""
    sample = dict(
        gt_sem_seg=dict(data=torch.from_numpy(gt[None].astype(np.int64))),
        pred_sem_seg=dict(data=torch.from_numpy(pred[None].astype(np.int64))),
        ref_id=ref_id, sent_id=sent_id, img_path='img.jpg', text='things')
    if no_target is not None:
        sample['no_target'] = no_target
    if score is not None:
        sample['no_target_score'] = torch.tensor(score)
    return sample


def hand_made_samples():
    """Six 2 x 5 sentences whose GRES values are worked out in the test."""
    zeros = np.zeros((2, 5), dtype=np.int64)
    three = zeros.copy()
    three[0, :3] = 1
    # multi-target: the ground truth is the union of two objects (5 + 2 px)
    obj1, obj2 = zeros.copy(), zeros.copy()
    obj1[0] = 1
    obj2[1, :2] = 1
    union = obj1 | obj2
    pred_d = union.copy()
    pred_d[1, 2:] = 1  # both objects and 3 background pixels: I 7, U 10
    # ignore_index: 4 foreground pixels, 2 ignored, 4 background
    gt_e = np.array([[1, 1, 1, 1, 255], [255, 0, 0, 0, 0]])
    pred_e = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])  # I 4, U 5
    ones = np.ones((2, 5), dtype=np.int64)
    pred_f = ones.copy()
    pred_f[1, 4] = 0  # I 9, U 10
    return [
        make_sample(zeros, zeros, True, ref_id=0),  # A: no target, right
        make_sample(zeros, three, True, ref_id=1),  # B: no target, a mask
        make_sample(three, zeros, False, ref_id=2),  # C: targeted, empty
        make_sample(union, pred_d, False, ref_id=3),  # D: IoU 0.7
        make_sample(gt_e, pred_e, False, ref_id=4),  # E: IoU 0.8
        make_sample(ones, pred_f, False, ref_id=5),  # F: IoU 0.9
    ]


def test_hand_made_values():
    metric = GRefSegMetric()
    metric.process(None, hand_made_samples())
    r = metric.results
    assert [x['iou'] for x in r] == [1.0, 0.0, 0.0, 0.7, 0.8, 0.9]
    assert [x['intersection'] for x in r] == [0, 0, 0, 7, 4, 9]
    assert [x['union'] for x in r] == [0, 3, 3, 10, 5, 10]
    assert [x['no_target'] for x in r] == [True, True] + [False] * 4
    assert [x['pred_no_target'] for x in r] == [
        True, False, True, False, False, False]
    result = metric.compute_metrics(r)
    assert set(result) == KEYS
    assert result['gIoU'] == pytest.approx(100 * 3.4 / 6)
    assert result['cIoU'] == pytest.approx(100 * 20 / 31)
    assert result['N-acc'] == pytest.approx(50.0)  # A of A, B
    assert result['T-acc'] == pytest.approx(75.0)  # D, E, F of C .. F
    # Over C .. F with >=: IoUs exactly at a threshold count.
    assert result['Pr@0.7'] == pytest.approx(75.0)
    assert result['Pr@0.8'] == pytest.approx(50.0)
    assert result['Pr@0.9'] == pytest.approx(25.0)


def test_plain_metric_scores_the_same_masks_otherwise():
    """RefSegMetric keeps its own rules on the same samples (IoU 1 for the
    empty union, strict Prec@X); only GRefSegMetric applies GRES."""
    plain = RefSegMetric()
    plain.process(None, hand_made_samples())
    assert [x['iou'] for x in plain.results] == [1.0, 0.0, 0.0, 0.7, 0.8, 0.9]
    assert 'no_target' not in plain.results[0]
    # A (1.0), E and F are above 0.7; D (exactly 0.7) is not
    assert plain.compute_metrics(plain.results)['Prec@0.7'] == pytest.approx(
        100 * 3 / 6)


def test_no_target_from_the_ground_truth_without_the_key():
    zeros = np.zeros((2, 2), dtype=np.int64)
    ignored = np.full((2, 2), 255)
    target = np.array([[1, 0], [0, 0]])
    metric = GRefSegMetric()
    metric.process(None, [
        make_sample(zeros, zeros),  # no target, predicted so: IoU 1
        make_sample(ignored, target),  # no foreground: no target, IoU 0
        make_sample(target, zeros),  # targeted, predicted empty: IoU 0
    ])
    assert [x['no_target'] for x in metric.results] == [True, True, False]
    assert [x['iou'] for x in metric.results] == [1.0, 0.0, 0.0]
    # the key wins over the mask: a targeted sentence with an all-ignored
    # mask and no prediction has U 0 and scores IoU 0, as in ReLA
    metric = GRefSegMetric()
    metric.process(None, [make_sample(ignored, zeros, no_target=False)])
    assert metric.results[0]['iou'] == 0.0


def test_undefined_shares_are_nan_and_all_right_no_target_is_perfect():
    zeros = np.zeros((3, 3), dtype=np.int64)
    metric = GRefSegMetric()
    metric.process(None, [make_sample(zeros, zeros, True, sent_id=i)
                          for i in range(2)])
    result = metric.compute_metrics(metric.results)
    assert result['gIoU'] == result['cIoU'] == result['N-acc'] == 100.0
    assert all(math.isnan(result[k])
               for k in ('T-acc', 'Pr@0.7', 'Pr@0.8', 'Pr@0.9'))


def gres_reference(preds, gts, no_targets, ignore_index=255):
    """The GRES formulas written out sentence by sentence, in percent."""
    ious, total_i, total_u = [], 0, 0
    n_hits, t_hits, prs = [], [], {0.7: [], 0.8: [], 0.9: []}
    for pred, gt, nt in zip(preds, gts, no_targets):
        empty = pred.sum() == 0
        valid = gt != ignore_index
        fg = gt == 1
        i = int(np.sum(pred & fg & valid))
        u = int(np.sum((pred & valid) | fg))
        if nt:
            n_hits.append(empty)
            iou, i, u = (1.0, 0, 0) if empty else (0.0, 0, u)
        else:
            t_hits.append(not empty)
            iou = i / u if u else 0.0
            for thr in prs:
                prs[thr].append(iou >= thr)
        ious.append(iou)
        total_i += i
        total_u += u
    ref = {'gIoU': 100 * np.mean(ious), 'cIoU': 100 * total_i / total_u,
           'N-acc': 100 * np.mean(n_hits), 'T-acc': 100 * np.mean(t_hits)}
    ref.update({f'Pr@{t}': 100 * np.mean(v) for t, v in prs.items()})
    return ref


def random_cases(rng, num):
    """Sentences with and without targets, some predicted empty, some
    ground truths with ignored pixels; IoUs spread over [0, 1]."""
    preds, gts, nts = [], [], []
    for k in range(num):
        h, w = rng.integers(4, 20, size=2)
        nt = rng.random() < 0.3
        fg = np.zeros((h, w), bool) if nt else \
            rng.random((h, w)) < rng.uniform(0.1, 0.6)
        fg[0, 0] |= not nt  # a targeted sentence has a foreground pixel
        flip = rng.random((h, w)) < (k / num) * 0.6
        pred = np.zeros((h, w), bool) if rng.random() < 0.25 else fg ^ flip
        gt = fg.astype(np.int64)
        if rng.random() < 0.3:
            gt[rng.random((h, w)) < 0.1] = 255
        preds.append(pred)
        gts.append(gt)
        nts.append(nt)
    return preds, gts, nts


def test_matches_reference_on_random_cases():
    rng = np.random.default_rng(0)
    preds, gts, nts = random_cases(rng, 60)
    metric = GRefSegMetric()
    metric.process(None, [make_sample(g, p, nt, ref_id=i) for i, (p, g, nt)
                          in enumerate(zip(preds, gts, nts))])
    result = metric.compute_metrics(metric.results)
    ref = gres_reference(preds, gts, nts)
    assert set(result) == set(ref) == KEYS
    for key in ref:
        assert result[key] == pytest.approx(ref[key], abs=1e-9), key
    # The cases reach every branch and the shares are not trivial.
    assert 0 < ref['N-acc'] < 100 and 0 < ref['T-acc'] < 100
    assert ref['Pr@0.7'] > ref['Pr@0.9'] > 0


def test_records_carry_the_no_target_fields(tmp_path):
    zeros = np.zeros((2, 2), dtype=np.int64)
    ones = np.ones((2, 2), dtype=np.int64)
    metric = GRefSegMetric(output_dir=str(tmp_path), prefix='grefcoco_val')
    metric.process(None, [
        make_sample(zeros, ones, True, score=0.25, ref_id=1, sent_id=2),
        make_sample(ones, ones, False, ref_id=1, sent_id=3),
    ])
    metric.compute_metrics(metric.results)
    with open(tmp_path / 'per_sentence_grefcoco_val.jsonl') as f:
        records = [json.loads(line) for line in f]
    assert records[0] == dict(
        key='1/2', ref_id=1, sent_id=2, sentence='things', intersection=0,
        union=4, iou=0.0, img_path='img.jpg', no_target=True,
        pred_no_target=False, no_target_score=0.25)
    assert records[1]['no_target'] is False
    assert records[1]['iou'] == 1.0
    assert 'no_target_score' not in records[1]


def test_through_evaluator_with_data_samples_and_dicts():
    """Model outputs (SegDataSample with the metainfo ``no_target`` and the
    data field ``no_target_score``) and plain dicts reach the metric as
    mmengine's Evaluator hands them on."""
    rng = np.random.default_rng(1)
    preds, gts, nts = random_cases(rng, 8)
    metric = METRICS.build(dict(type='GRefSegMetric', prefix='val'))
    evaluator = Evaluator(metric)
    batch = []
    for k in range(4):
        sample = SegDataSample(metainfo=dict(
            img_path=f'{k}.jpg', ref_id=k, sent_id=k, text='t',
            no_target=nts[k], num_targets=0 if nts[k] else 1))
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(gts[k][None]))
        sample.pred_sem_seg = PixelData(
            data=torch.from_numpy(preds[k][None].astype(np.int64)))
        sample.set_data(dict(no_target_score=torch.tensor(0.1 * k)))
        batch.append(sample)
    evaluator.process(data_samples=batch, data_batch=None)
    evaluator.process(data_samples=[
        make_sample(gts[k], preds[k], nts[k], ref_id=k) for k in range(4, 8)
    ], data_batch=None)
    scores = [r.get('no_target_score') for r in metric.results]
    assert scores[:4] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert scores[4:] == [None] * 4
    result = evaluator.evaluate(8)
    ref = gres_reference(preds, gts, nts)
    assert set(result) == {f'val/{k}' for k in KEYS}
    for key in KEYS:
        r, e = result[f'val/{key}'], ref[key]
        assert (math.isnan(r) and math.isnan(e)) or r == pytest.approx(e), key
