"""Small helpers of sera_mm, one per job: atomic file writes (importing
registers the 'atomic_local' file backend), safe checkpoint loading, config
loading and the leaf-dataset walk (:mod:`.config`), pretrained-weight
references (:mod:`.pretrained`), the letterbox geometry (:mod:`.letterbox`)
and parameter reports."""
from .atomic import (AtomicLocalBackend, atomic_open, atomic_write_bytes,
                     atomic_write_json, atomic_write_text)
from .checkpoint import (UnsafeCheckpointError, checkpoint_safe_globals,
                         load_weights_only, register_checkpoint_safe_globals,
                         register_safe_checkpoint_loaders)
from .param_report import format_param_report, param_report
from .pretrained import disable_pretrained

__all__ = [
    'AtomicLocalBackend', 'atomic_open', 'atomic_write_bytes',
    'atomic_write_json', 'atomic_write_text',
    'UnsafeCheckpointError', 'checkpoint_safe_globals', 'load_weights_only',
    'register_checkpoint_safe_globals', 'register_safe_checkpoint_loaders',
    'disable_pretrained', 'format_param_report', 'param_report'
]
