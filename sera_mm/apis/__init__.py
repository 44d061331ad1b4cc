"""High-level inference: build a model from a config and a checkpoint, segment
the object a sentence refers to."""
from sera_mm.engine.runner.checkpoint_match import CheckpointMismatchError
from .inference import (build_test_pipeline, check_sentence, inference_referring,
                        init_model, load_config, load_image, load_referring_checkpoint)

__all__ = [
    'CheckpointMismatchError', 'build_test_pipeline', 'check_sentence',
    'inference_referring', 'init_model', 'load_config', 'load_image',
    'load_referring_checkpoint'
]
