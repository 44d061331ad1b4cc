"""Draws test predictions, one picture per sentence (``tools/test.py --show-dir``)."""
import os.path as osp
from typing import Optional, Sequence

import mmcv
from mmengine import fileio
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.structures import SegDataSample

from sera_mm.registry import HOOKS


@HOOKS.register_module()
class ReferringVisualizationHook(SegVisualizationHook):
    """mmseg's :class:`SegVisualizationHook`, with one picture per sentence.

    mmseg names a picture after its image file, so the sentences of one
    image would overwrite each other's pictures; here each picture is
    ``<mode>_<split>_<image stem>_sent<sent_id>`` (the split of
    :class:`~sera_mm.engine.runner.MultiSplitTestLoop`, left out for other
    loops). Draws every ``interval``-th validation and test batch
    (``tools/test.py --show-dir`` sets 1). Arguments as
    :class:`SegVisualizationHook`.
    """

    def _after_iter(self, runner, batch_idx: int, data_batch: dict,
                    outputs: Sequence[SegDataSample], mode: str = 'val') -> None:
        if not self.draw or mode == 'train':
            return
        if not self.every_n_inner_iters(batch_idx, self.interval):
            return
        split = self._split_name(runner) if mode == 'test' else None
        prefix = f'{mode}_{split}' if split else mode
        for output in outputs:
            img_bytes = fileio.get(output.img_path, backend_args=self.backend_args)
            # as the data pipeline reads it: the prediction is in the
            # stored orientation (configs/_base_/datasets/refcoco.py)
            img = mmcv.imfrombytes(img_bytes, flag='color_ignore_orientation',
                                   channel_order='rgb')
            self._visualizer.add_datasample(
                self.picture_name(prefix, output), img, data_sample=output,
                show=self.show, wait_time=self.wait_time, step=runner.iter)

    @staticmethod
    def picture_name(prefix: str, data_sample: SegDataSample) -> str:
        """``<prefix>_<image stem>_sent<sent_id>`` (the stem alone without a
        ``sent_id`` in the metainfo)."""
        stem = osp.splitext(osp.basename(data_sample.img_path))[0]
        sent_id = data_sample.metainfo.get('sent_id')
        return f'{prefix}_{stem}' + ('' if sent_id is None else f'_sent{sent_id}')

    @staticmethod
    def _split_name(runner) -> Optional[str]:
        # the built loop only: Runner.test_loop would build one from a dict
        loop = getattr(runner, '_test_loop', None)
        return getattr(loop, 'split_name', None)
