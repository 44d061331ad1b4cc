"""High-level inference: build a model from a config and a checkpoint, segment
the object a sentence refers to."""
from .inference import (CheckpointMismatchError, build_test_pipeline,
                        check_sentence, inference_referring, init_model,
                        load_config, load_image, load_referring_checkpoint)

__all__ = [
    'CheckpointMismatchError', 'build_test_pipeline', 'check_sentence',
    'inference_referring', 'init_model', 'load_config', 'load_image',
    'load_referring_checkpoint'
]
