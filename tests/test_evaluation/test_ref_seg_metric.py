"""Tests of RefSegMetric: values, the model's masks, records, evaluator path."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from sera_mm.evaluation import RefSegMetric
from sera_mm.registry import METRICS

PREC_KEYS = ['Prec@0.5', 'Prec@0.6', 'Prec@0.7', 'Prec@0.8', 'Prec@0.9']


def make_sample(gt: np.ndarray, pred: np.ndarray = None,
                logits: np.ndarray = None, ref_id: int = 0,
                sent_id: int = 0, img_path: str = 'img.jpg',
                text: str = 'the thing') -> dict:
    """A data-sample dict as the evaluator hands it to process()."""
    sample = dict(
        gt_sem_seg=dict(data=torch.from_numpy(gt[None].astype(np.int64))),
        ref_id=ref_id, sent_id=sent_id, img_path=img_path, text=text)
    if pred is not None:
        sample['pred_sem_seg'] = dict(
            data=torch.from_numpy(pred[None].astype(np.int64)))
    if logits is not None:
        sample['seg_logits'] = dict(
            data=torch.from_numpy(logits[None].astype(np.float32)))
    return sample


def numpy_reference(preds, gts):
    """The RIS metrics written out independently, in percent."""
    inter = np.array([np.logical_and(p, g).sum() for p, g in zip(preds, gts)],
                     dtype=np.float64)
    union = np.array([np.logical_or(p, g).sum() for p, g in zip(preds, gts)],
                     dtype=np.float64)
    ious = []
    for i, u in zip(inter, union):
        ious.append(1.0 if u == 0 else i / u)
    ious = np.array(ious)
    ref = {'mIoU': 100 * ious.mean(), 'oIoU': 100 * inter.sum() / union.sum()}
    for key, thr in zip(PREC_KEYS, [0.5, 0.6, 0.7, 0.8, 0.9]):
        ref[key] = 100 * np.mean([iou > thr for iou in ious])
    return ref


def random_masks(rng, num):
    """Pairs of masks of varying size whose IoUs spread over [0, 1]."""
    preds, gts = [], []
    for k in range(num):
        h, w = rng.integers(5, 30, size=2)
        gt = rng.random((h, w)) < rng.uniform(0.1, 0.6)
        flip = rng.random((h, w)) < (k / num) * 0.6
        preds.append(np.logical_xor(gt, flip))
        gts.append(gt)
    gts[0][:] = False
    preds[0][:] = False  # empty union: IoU 1.0
    gts[1][:] = False  # empty ground truth, non-empty prediction: IoU 0
    preds[1][0, 0] = True
    return preds, gts


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    preds, gts = random_masks(rng, 40)
    metric = RefSegMetric()
    metric.process(None, [
        make_sample(g, pred=p, ref_id=i) for i, (p, g) in enumerate(
            zip(preds, gts))
    ])
    result = metric.compute_metrics(metric.results)
    ref = numpy_reference(preds, gts)
    assert set(result) == set(ref)
    for key in ref:
        assert abs(result[key] - ref[key]) < 1e-6, key
    # The masks were built so that the precisions are not all equal.
    assert len({round(ref[k], 6) for k in PREC_KEYS}) > 2


def test_hand_made_values_and_strict_precision():
    gt = np.zeros((4, 4), dtype=bool)
    gt[:2, :2] = True  # 4 pixels
    half = np.zeros_like(gt)
    half[0, :2] = True  # I = 2, U = 4: IoU exactly 0.5
    empty = np.zeros_like(gt)
    samples = [
        make_sample(gt, pred=gt, ref_id=0),  # IoU 1
        make_sample(gt, pred=half, ref_id=1),  # IoU 0.5
        make_sample(empty, pred=empty, ref_id=2),  # empty union: IoU 1
        make_sample(empty, pred=half, ref_id=3),  # IoU 0
    ]
    metric = RefSegMetric()
    metric.process(None, samples)
    assert [r['iou'] for r in metric.results] == [1.0, 0.5, 1.0, 0.0]
    assert [r['union'] for r in metric.results] == [4, 4, 0, 2]
    result = metric.compute_metrics(metric.results)
    assert result['mIoU'] == pytest.approx(62.5)
    assert result['oIoU'] == pytest.approx(100 * 6 / 10)
    # IoU 0.5 is not "above" 0.5.
    assert result['Prec@0.5'] == pytest.approx(50.0)
    assert result['Prec@0.9'] == pytest.approx(50.0)


def test_all_empty_unions_count_as_perfect():
    empty = np.zeros((3, 5), dtype=bool)
    metric = RefSegMetric()
    metric.process(None, [make_sample(empty, pred=empty, ref_id=i)
                          for i in range(3)])
    result = metric.compute_metrics(metric.results)
    assert all(v == pytest.approx(100.0) for v in result.values())


def test_the_model_prediction_is_scored_not_the_logits():
    """The metric scores ``pred_sem_seg``, the mask the model thresholded
    with its own test_cfg.threshold; it applies no threshold of its own."""
    gt = np.array([[1, 1, 0, 0]])
    probs = np.array([[0.9, 0.34, 0.36, 0.1]])
    logits = np.log(probs / (1 - probs))
    # seg_logits alone would give pixels 0 and 2 at 0.35; the prediction is 0 and 1
    sample = make_sample(gt, pred=np.array([[1, 1, 1, 0]]), logits=logits)
    metric = RefSegMetric()
    metric.process(None, [sample])
    assert metric.results[0]['intersection'] == 2
    assert metric.results[0]['union'] == 3
    with pytest.raises(TypeError, match='threshold'):
        RefSegMetric(threshold=0.35)


def test_ignore_index_excluded():
    gt = np.array([[1, 255, 0, 255]])
    pred = np.array([[1, 1, 0, 1]])
    metric = RefSegMetric()
    metric.process(None, [make_sample(gt, pred=pred)])
    assert metric.results[0]['intersection'] == 1
    assert metric.results[0]['union'] == 1

    with pytest.raises(ValueError, match='other than 0, 1'):
        RefSegMetric(ignore_index=None).process(
            None, [make_sample(gt, pred=pred)])


def test_shape_mismatch_names_the_sample():
    sample = make_sample(np.zeros((4, 4)), pred=np.zeros((4, 5)),
                         img_path='COCO_1.jpg', ref_id=7)
    with pytest.raises(ValueError, match=r"COCO_1\.jpg.*ref_id=7"):
        RefSegMetric().process(None, [sample])


def test_missing_prediction_is_named():
    sample = make_sample(np.zeros((2, 2)), logits=np.zeros((2, 2)), img_path='a.jpg')
    with pytest.raises(KeyError, match='a.jpg.*has no pred_sem_seg'):
        RefSegMetric().process(None, [sample])


def test_per_sentence_records(tmp_path):
    gt = np.zeros((4, 4), dtype=bool)
    gt[:2] = True
    pred = np.zeros_like(gt)
    pred[0] = True
    samples = [
        # Two sentences of one image and one referent.
        make_sample(gt, pred=gt, ref_id=5, sent_id=10, img_path='x.jpg',
                    text='left cup'),
        make_sample(gt, pred=pred, ref_id=5, sent_id=11, img_path='x.jpg',
                    text='cup on the left'),
        # Another referent in the same image, ids as numpy scalars.
        make_sample(gt, pred=pred, ref_id=np.int64(2), sent_id=np.int64(3),
                    img_path='x.jpg', text='the table'),
    ]
    metric = RefSegMetric(output_dir=str(tmp_path), prefix='refcoco_val')
    metric.process(None, samples)
    metric.compute_metrics(metric.results)

    assert os.listdir(tmp_path) == ['per_sentence_refcoco_val.jsonl']
    with open(tmp_path / 'per_sentence_refcoco_val.jsonl') as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 3
    by_key = {r['key']: r for r in records}
    assert set(by_key) == {'5/10', '5/11', '2/3'}
    assert by_key['5/10'] == dict(
        key='5/10', ref_id=5, sent_id=10, sentence='left cup',
        intersection=8, union=8, iou=1.0, img_path='x.jpg')
    assert by_key['5/11']['sentence'] == 'cup on the left'
    assert by_key['5/11']['iou'] == pytest.approx(0.5)
    # Ordered by ref_id, then sent_id.
    assert [r['key'] for r in records] == ['2/3', '5/10', '5/11']


def test_record_file_name_from_split_or_name(tmp_path):
    gt = np.ones((2, 2), dtype=bool)
    metric = RefSegMetric(output_dir=str(tmp_path))
    metric.dataset_meta = dict(split='testA')
    metric.process(None, [make_sample(gt, pred=gt)])
    metric.compute_metrics(metric.results)
    metric = RefSegMetric(output_dir=str(tmp_path), output_name='mine.jsonl')
    metric.process(None, [make_sample(gt, pred=gt)])
    metric.compute_metrics(metric.results)
    assert sorted(os.listdir(tmp_path)) == [
        'mine.jsonl', 'per_sentence_testA.jsonl']


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    gt = np.ones((2, 2), dtype=bool)
    metric = RefSegMetric(output_dir=str(tmp_path))
    metric.process(None, [make_sample(gt, pred=gt, sent_id=i)
                          for i in range(3)])
    calls = []

    def failing_dumps(obj, **kwargs):
        calls.append(obj)
        if len(calls) == 2:
            raise RuntimeError('disk full')
        return json.JSONEncoder().encode(obj)

    monkeypatch.setattr(
        'sera_mm.evaluation.ref_seg_metric.json.dumps', failing_dumps)
    with pytest.raises(RuntimeError, match='disk full'):
        metric.compute_metrics(metric.results)
    assert os.listdir(tmp_path) == []


def test_through_evaluator_with_several_batches(tmp_path):
    rng = np.random.default_rng(1)
    preds, gts = random_masks(rng, 10)
    metric = METRICS.build(
        dict(type='RefSegMetric', prefix='val', output_dir=str(tmp_path)))
    evaluator = Evaluator(metric)
    for start in range(0, 10, 3):  # batches of 3, 3, 3, 1
        batch = []
        for k in range(start, min(start + 3, 10)):
            sample = SegDataSample(metainfo=dict(
                img_path=f'img{k // 2}.jpg', ref_id=k // 2, sent_id=k,
                text=f'sentence {k}'))
            sample.gt_sem_seg = PixelData(
                data=torch.from_numpy(gts[k][None].astype(np.int64)))
            sample.pred_sem_seg = PixelData(
                data=torch.from_numpy(preds[k][None].astype(np.int64)))
            batch.append(sample)
        evaluator.process(data_samples=batch, data_batch=None)
    result = evaluator.evaluate(10)
    ref = numpy_reference(preds, gts)
    assert set(result) == {f'val/{k}' for k in ref}
    for key in ref:
        assert abs(result[f'val/{key}'] - ref[key]) < 1e-6, key
    with open(osp.join(tmp_path, 'per_sentence_val.jsonl')) as f:
        assert len(f.readlines()) == 10
    # evaluate() cleared the state for the next round.
    assert metric.results == []
