"""High-level inference: build a model from a config and a checkpoint, segment
the object a sentence refers to (in users' photos too: :mod:`.photo`), and
read what the SERA routers chose for it (:mod:`.routing`)."""
from sera_mm.engine.runner.checkpoint_match import CheckpointMismatchError
from .inference import (build_test_pipeline, check_sentence, default_threshold, inference_referring,
                        init_model, load_config, load_image, load_referring_checkpoint)
from .photo import PHOTO_MAX_SIDE, read_photo, shrink_for_model
from .routing import has_routers, sample_routing

__all__ = [
    'CheckpointMismatchError', 'PHOTO_MAX_SIDE', 'build_test_pipeline', 'check_sentence',
    'default_threshold', 'has_routers', 'inference_referring', 'init_model', 'load_config',
    'load_image', 'load_referring_checkpoint', 'read_photo', 'sample_routing',
    'shrink_for_model'
]
