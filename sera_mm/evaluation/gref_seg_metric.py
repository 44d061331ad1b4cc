"""Generalized referring-segmentation metric (GRES: gIoU, cIoU, N-acc,
T-acc, Pr@X) for sentences that name one, several or no objects."""
from typing import Dict, List

import numpy as np

from sera_mm.registry import METRICS
from .ref_seg_metric import RefSegMetric, _plain

GRES_THRESHOLDS = (0.7, 0.8, 0.9)


@METRICS.register_module()
class GRefSegMetric(RefSegMetric):
    """GRES metrics of gRefCOCO, in percent.

    The protocol is that of the GRES paper (Liu et al., "GRES: Generalized
    Referring Expression Segmentation", CVPR 2023) as its code scores it
    (ReLA, ``gres_model/evaluation/refer_evaluation.py``). A prediction says
    "no target" when its ``pred_sem_seg`` is all zero; a sentence names no
    target when its metainfo ``no_target`` is true (without the key: when
    its ground truth has no foreground pixel). I and U are
    :class:`RefSegMetric`'s (ignored pixels excluded; a multi-target
    sentence's ground truth is the union of its objects), then per sentence:

    - no target, predicted no target: IoU 1, I = U = 0;
    - no target, predicted a mask: IoU 0, I = 0, U = the mask's area;
    - targeted: IoU = I / U (a targeted sentence predicted "no target" has
      I = 0, so IoU 0; and IoU 0 when U is 0, as in ReLA).

    Metrics: ``gIoU`` the mean IoU; ``cIoU`` sum I / sum U (100 when every
    U is 0); ``N-acc`` the share of no-target sentences predicted no
    target; ``T-acc`` the share of targeted sentences not predicted no
    target; ``Pr@0.7`` ... ``Pr@0.9`` the share of targeted sentences whose
    IoU is at least the threshold (``>=``, as ReLA). Differences from ReLA:
    N-acc and T-acc are in percent (as the paper's tables, ReLA returns
    fractions), and a share over no sentences is NaN (ReLA reports 0 for
    both accuracies when no sentence is no-target).

    Per-sentence records (``output_dir``) are :class:`RefSegMetric`'s with
    the GRES I, U and IoU plus ``no_target``, ``pred_no_target`` and, when
    the prediction carries it, ``no_target_score`` (the model's probability
    that the sentence names nothing). Arguments are :class:`RefSegMetric`'s.
    """

    def _score(self, sample: dict) -> dict:
        """:class:`RefSegMetric`'s result of one sentence, rescored by GRES.

        Called by :meth:`process` for each sample (a dict).
        """
        result = super()._score(sample)
        name = self._sample_name(sample)
        pred_nt = not bool(
            (self._single_channel(sample, 'pred_sem_seg', name) > 0).any())
        no_target = sample.get('no_target')
        if no_target is None:
            no_target = not bool(
                (self._single_channel(sample, 'gt_sem_seg', name) == 1).any())
        no_target = bool(_plain(no_target))
        if no_target:
            result.update(intersection=0, iou=float(pred_nt),
                          union=0 if pred_nt else result['union'])
        elif result['union'] == 0:
            result['iou'] = 0.0
        result.update(no_target=no_target, pred_no_target=pred_nt)
        score = sample.get('no_target_score')
        if score is not None:
            result['no_target_score'] = float(_plain(score))
        return result

    def _summarise(self, results: List[dict]) -> Dict[str, float]:
        """gIoU, cIoU, N-acc, T-acc and Pr@0.7 ... 0.9 from the results of
        :meth:`_score`; called by :meth:`compute_metrics`."""
        iou = np.array([r['iou'] for r in results], dtype=np.float64)
        no_target = np.array([r['no_target'] for r in results], dtype=bool)
        pred_nt = np.array([r['pred_no_target'] for r in results], dtype=bool)
        total_i = sum(r['intersection'] for r in results)
        total_u = sum(r['union'] for r in results)
        metrics = {
            'gIoU': float(iou.mean() * 100),
            'cIoU': total_i / total_u * 100 if total_u > 0 else 100.0,
            'N-acc': _percent(pred_nt[no_target]),
            'T-acc': _percent(~pred_nt[~no_target]),
        }
        for thr in GRES_THRESHOLDS:
            metrics[f'Pr@{thr}'] = _percent(iou[~no_target] >= thr)
        return metrics

    def _record(self, result: dict) -> dict:
        """:class:`RefSegMetric`'s record plus the no-target fields."""
        record = super()._record(result)
        for key in ('no_target', 'pred_no_target', 'no_target_score'):
            if key in result:
                record[key] = result[key]
        return record


def _percent(hits: np.ndarray) -> float:
    """The share of true entries in percent; NaN when there are none."""
    return float(hits.mean() * 100) if hits.size else float('nan')
