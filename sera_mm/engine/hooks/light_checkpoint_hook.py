"""Light checkpoints: frozen weights stored as a reference to their file."""
from typing import List, Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from sera_mm.registry import HOOKS
from sera_mm.utils.light_checkpoint import light_records, make_light, restore_frozen
from sera_mm.utils.pretrained import pretrained_sources


@HOOKS.register_module()
class LightCheckpointHook(Hook):
    """Saves light checkpoints when ``enabled``; loads light checkpoints
    always.

    A light checkpoint leaves out the frozen weights that the model's
    pretrained files (``init_cfg`` of ``type='Pretrained'``, ``pretrained``)
    reproduce, and records each file's path and SHA-256
    (:mod:`sera_mm.utils.light_checkpoint`). Every load through the Runner
    (``load_from``, ``--resume``, ``tools/test.py``) rebuilds them from the
    files first and refuses a file that changed, naming it.

    Args:
        enabled (bool): Save light checkpoints (``tools/train.py
            --light-checkpoints``). Defaults to False.
    """


    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.records: Optional[List[dict]] = None

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Leaves the reproducible frozen weights out of ``checkpoint``; the
        files are compared with the weights at the first save only."""
        if not self.enabled:
            return
        if self.records is None:
            self.records = light_records(self._model(runner), pretrained_sources(runner.cfg.model))
            saved = sum(len(r['keys']) for r in self.records)
            runner.logger.info(f'Light checkpoints: {saved} frozen tensors are read from '
                               f"{[r['file'] for r in self.records]} instead of stored")
        make_light(checkpoint, self.records)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Rebuilds a light checkpoint's frozen weights from their files."""
        restore_frozen(checkpoint, self._model(runner))
