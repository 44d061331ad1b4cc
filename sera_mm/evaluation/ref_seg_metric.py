"""Referring-segmentation metric: per-sentence IoU, mIoU, oIoU and Prec@X."""
import json
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from mmengine.structures import BaseDataElement
from torch import Tensor

from sera_mm.registry import METRICS
from sera_mm.utils.atomic import atomic_open

PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


@METRICS.register_module()
class RefSegMetric(BaseMetric):
    """Referring image segmentation metric at the original image size.

    Scores the model's own masks, ``pred_sem_seg`` (as mmseg's
    ``IoUMetric``), made with the model's ``test_cfg.threshold``.
    :meth:`process` reduces each sentence to its intersection I, union U and
    IoU; :meth:`compute_metrics` summarises them, in percent:

    - ``mIoU``: mean over sentences of I / U.
    - ``oIoU``: sum over sentences of I / sum of U.
    - ``Prec@0.5`` ... ``Prec@0.9``: share of sentences whose IoU is
      strictly greater than the threshold (the paper: "above"; CRIS and DETRIS
      compare with ``>``, LAVT with ``>=``; the two differ only on sentences
      whose IoU equals a threshold exactly).

    A sentence whose union is empty counts IoU 1.0. Pixels where the ground
    truth equals ``ignore_index`` count neither in I nor in U.

    Args:
        ignore_index (int, optional): Ground-truth value excluded from I and
            U; None to keep every pixel. Defaults to 255.
        output_dir (str, optional): Folder for one JSON record per sentence
            (written on rank 0 in :meth:`compute_metrics`); None writes
            nothing. Defaults to None.
        output_name (str, optional): File name inside ``output_dir``; None
            gives ``per_sentence_<tag>.jsonl`` with ``tag`` the ``prefix``,
            else ``dataset_meta['split']``, else ``'results'``. Defaults to
            None.
        collect_device (str): ``'cpu'`` or ``'gpu'``, how results are
            gathered across ranks. Defaults to ``'cpu'``.
        prefix (str, optional): Prefix of the metric names, e.g.
            ``'refcoco_val'`` gives ``'refcoco_val/mIoU'``. Defaults to None.
        collect_dir (str, optional): Folder for cross-rank collection when
            ``collect_device='cpu'``. Defaults to None.
    """

    def __init__(self,
                 ignore_index: Optional[int] = 255,
                 output_dir: Optional[str] = None,
                 output_name: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(
            collect_device=collect_device,
            prefix=prefix,
            collect_dir=collect_dir)
        self.ignore_index = ignore_index
        self.output_dir = output_dir
        self.output_name = output_name

    def process(self, data_batch: Any,
                data_samples: Sequence[Any]) -> None:
        """Reduces each sentence of a batch to I, U and IoU.

        Called once per batch by the evaluator; appends one small dict per
        sentence to ``self.results`` (the masks are not kept).

        Args:
            data_batch (Any): The batch from the dataloader (unused).
            data_samples (Sequence[dict | SegDataSample]): The model's
                outputs: ``pred_sem_seg`` (1 x H x W, nonzero for the
                referent) and ``gt_sem_seg`` (1 x H x W) at the original
                image size, and the metainfo ``ref_id``, ``sent_id``,
                ``text`` and ``img_path`` (None when missing).
        """
        for sample in data_samples:
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            self.results.append(self._score(sample))

    def _score(self, sample: dict) -> dict:
        """One sentence's result: ids, text, I, U and IoU.

        Called by :meth:`process` for each sample (a dict); subclasses
        extend the dict it returns.
        """
        name = self._sample_name(sample)
        pred = self._single_channel(sample, 'pred_sem_seg', name) > 0
        gt = self._single_channel(sample, 'gt_sem_seg', name)
        if pred.shape != gt.shape:
            raise ValueError(
                f'RefSegMetric: prediction {tuple(pred.shape)} and '
                f'gt_sem_seg {tuple(gt.shape)} of {name} differ in size; '
                'both must be at the original image size')
        gt = gt.to(pred.device)
        valid = torch.ones_like(pred) if self.ignore_index is None \
            else gt != self.ignore_index
        if ((gt != 0) & (gt != 1) & valid).any():
            raise ValueError(
                f'RefSegMetric: gt_sem_seg of {name} holds values other '
                f'than 0, 1 and ignore_index={self.ignore_index}: '
                f'{gt.unique().tolist()}')
        target = gt == 1  # False on ignored pixels already
        pred = pred & valid
        intersection = int((pred & target).sum().item())
        union = int((pred | target).sum().item())
        return dict(
            ref_id=_plain(sample.get('ref_id')),
            sent_id=_plain(sample.get('sent_id')),
            text=sample.get('text'),
            img_path=sample.get('img_path'),
            intersection=intersection,
            union=union,
            iou=intersection / union if union > 0 else 1.0)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Summarises the per-sentence results of the whole split.

        Called on rank 0 once the results of all ranks are collected; logs a
        table and writes the per-sentence records when ``output_dir`` is set.

        Args:
            results (list[dict]): The dicts made by :meth:`process`.

        Returns:
            dict[str, float]: ``mIoU``, ``oIoU`` and ``Prec@0.5`` ...
            ``Prec@0.9``, in percent (mmengine adds the ``prefix``).
        """
        if not results:
            raise ValueError(f'{type(self).__name__}: no results to compute '
                             'metrics from; was process() called?')
        metrics = self._summarise(results)
        self._log_table(metrics, len(results))
        if self.output_dir is not None and is_main_process():
            self.write_records(results)
        return metrics

    def write_records(self, results: List[dict]) -> str:
        """Writes one JSON line per sentence into ``output_dir``, atomically.

        Called by :meth:`compute_metrics`. Records are sorted by ``ref_id``
        then ``sent_id``; ``key`` (``<ref_id>/<sent_id>``) tells apart the
        sentences of one image.

        Args:
            results (list[dict]): The dicts made by :meth:`process`.

        Returns:
            str: Path of the written file.
        """
        os.makedirs(self.output_dir, exist_ok=True)
        path = osp.join(self.output_dir, self._output_file_name())
        records = sorted(results, key=_record_order)
        with atomic_open(path, 'w') as f:
            for r in records:
                f.write(json.dumps(self._record(r), ensure_ascii=False))
                f.write('\n')
        print_log(f'{type(self).__name__}: wrote {len(records)} per-sentence '
                  f'records to {path}', logger='current')
        return path

    def _summarise(self, results: List[dict]) -> Dict[str, float]:
        """The metrics of :meth:`compute_metrics` from its results."""
        return summarise(
            np.array([r['intersection'] for r in results], dtype=np.int64),
            np.array([r['union'] for r in results], dtype=np.int64))

    def _record(self, result: dict) -> dict:
        """The JSON record :meth:`write_records` writes for one result."""
        return dict(
            key=f"{result['ref_id']}/{result['sent_id']}",
            ref_id=result['ref_id'],
            sent_id=result['sent_id'],
            sentence=result['text'],
            intersection=result['intersection'],
            union=result['union'],
            iou=result['iou'],
            img_path=result['img_path'])

    def _output_file_name(self) -> str:
        """File name of the per-sentence records (see ``output_name``)."""
        if self.output_name is not None:
            return self.output_name
        tag = self.prefix
        if not tag and self.dataset_meta:
            tag = self.dataset_meta.get('split')
        return f'per_sentence_{tag or "results"}.jsonl'.replace('/', '_')

    @classmethod
    def _single_channel(cls, sample: dict, key: str, name: str) -> Tensor:
        """``sample[key]`` (1 x H x W or H x W) as an H x W tensor."""
        t = cls._field(sample, key, name)
        if t.dim() == 3 and t.shape[0] == 1:
            return t[0]
        if t.dim() == 2:
            return t
        raise ValueError(f'RefSegMetric: {key} of {name} must be 1 x H x W, '
                         f'got {tuple(t.shape)}')

    @staticmethod
    def _field(sample: dict, key: str, name: str) -> Tensor:
        """``sample[key]['data']`` as a tensor, with an error naming it."""
        if key not in sample:
            raise KeyError(f'RefSegMetric: {name} has no {key}')
        data = sample[key]
        if isinstance(data, BaseDataElement):
            data = data.data
        elif isinstance(data, dict):
            data = data['data']
        return torch.as_tensor(data)

    @staticmethod
    def _sample_name(sample: dict) -> str:
        """How errors name a sample: its image path and ref/sentence ids."""
        return (f"sample (img_path={sample.get('img_path')!r}, "
                f"ref_id={sample.get('ref_id')!r}, "
                f"sent_id={sample.get('sent_id')!r})")

    def _log_table(self, metrics: Dict[str, float], num: int) -> None:
        """Prints the summary as a one-row table through mmengine's logger."""
        from prettytable import PrettyTable  # installed with mmseg
        table = PrettyTable()
        table.add_column('sentences', [num])
        for key, value in metrics.items():
            table.add_column(key, [f'{value:.2f}'])
        title = type(self).__name__
        if self.prefix:
            title += f' ({self.prefix})'
        print_log(f'{title}:\n' + table.get_string(),
                  logger=MMLogger.get_current_instance())


def summarise(intersections: np.ndarray,
              unions: np.ndarray) -> Dict[str, float]:
    """mIoU, oIoU and Prec@X in percent from per-sentence I and U.

    Args:
        intersections (np.ndarray): N intersections (pixel counts).
        unions (np.ndarray): N unions; 0 means an empty prediction on an
            empty ground truth, IoU 1.0 (and oIoU 100 if all unions are 0).

    Returns:
        dict[str, float]: ``mIoU``, ``oIoU``, ``Prec@0.5`` ... ``Prec@0.9``.
    """
    assert intersections.shape == unions.shape and intersections.ndim == 1
    ious = np.where(unions > 0,
                    intersections / np.maximum(unions, 1), 1.0)
    total_union = unions.sum()
    metrics = dict(
        mIoU=float(ious.mean() * 100),
        oIoU=float(intersections.sum() / total_union * 100)
        if total_union > 0 else 100.0)
    for thr in PREC_THRESHOLDS:
        metrics[f'Prec@{thr}'] = float((ious > thr).mean() * 100)
    return metrics


def _plain(value: Any) -> Any:
    """A numpy or 0-d tensor id as a Python number, so JSON can write it."""
    if isinstance(value, (np.generic, Tensor)):
        return value.item()
    return value


def _record_order(record: dict) -> Tuple[Tuple[int, Any], ...]:
    """Sort key of the per-sentence records: ref_id, then sent_id.

    Numbers sort numerically and before anything else, which sorts as text
    (ids may be missing or strings in other data sets).
    """
    return tuple((0, v) if isinstance(v, (int, float)) else (1, str(v))
                 for v in (record['ref_id'], record['sent_id']))
