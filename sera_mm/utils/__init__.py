"""Small helpers of sera_mm, one per job: atomic file writes (importing
registers the 'atomic_local' file backend), safe checkpoint loading, config
loading (:mod:`.config`), pretrained-weight references (:mod:`.pretrained`)
and the letterbox geometry (:mod:`.letterbox`)."""
from .atomic import (AtomicLocalBackend, atomic_open, atomic_write_bytes,
                     atomic_write_json, atomic_write_text)
from .checkpoint import (UnsafeCheckpointError, checkpoint_safe_globals,
                         load_weights_only, register_checkpoint_safe_globals,
                         register_safe_checkpoint_loaders)
from .pretrained import disable_pretrained

__all__ = [
    'AtomicLocalBackend', 'atomic_open', 'atomic_write_bytes',
    'atomic_write_json', 'atomic_write_text',
    'UnsafeCheckpointError', 'checkpoint_safe_globals', 'load_weights_only',
    'register_checkpoint_safe_globals', 'register_safe_checkpoint_loaders',
    'disable_pretrained'
]
