"""Registries of the ``sera_mm`` scope.

Each registry is a child of the matching mmengine root registry, as in mmseg
and mmpretrain, so configs with ``default_scope='sera_mm'`` find this
package's classes unprefixed, mmengine's and mmcv's through the parent, and
other packages' with their scope prefix (``mmseg.SegDataPreProcessor``).
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import INFERENCERS as MMENGINE_INFERENCERS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import \
    RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import \
    WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, locations=['sera_mm.engine'])
RUNNER_CONSTRUCTORS = Registry(
    'runner constructor', parent=MMENGINE_RUNNER_CONSTRUCTORS, locations=['sera_mm.engine'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, locations=['sera_mm.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['sera_mm.engine'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, locations=['sera_mm.datasets'])
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMENGINE_DATA_SAMPLERS, locations=['sera_mm.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, locations=['sera_mm.datasets'])
MODELS = Registry('model', parent=MMENGINE_MODELS, locations=['sera_mm.models'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, locations=['sera_mm.models'])
WEIGHT_INITIALIZERS = Registry(
    'weight initializer', parent=MMENGINE_WEIGHT_INITIALIZERS, locations=['sera_mm.models'])
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, locations=['sera_mm.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, locations=['sera_mm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['sera_mm.engine'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS, locations=['sera_mm.engine'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, locations=['sera_mm.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMENGINE_EVALUATOR, locations=['sera_mm.evaluation'])
TASK_UTILS = Registry('task util', parent=MMENGINE_TASK_UTILS, locations=['sera_mm.models'])
VISUALIZERS = Registry('visualizer',
                       parent=MMENGINE_VISUALIZERS, locations=['sera_mm.visualization'])
VISBACKENDS = Registry('vis_backend',
                       parent=MMENGINE_VISBACKENDS, locations=['sera_mm.visualization'])
LOG_PROCESSORS = Registry('log_processor',
                          parent=MMENGINE_LOG_PROCESSORS, locations=['sera_mm.engine'])
INFERENCERS = Registry('inferencer', parent=MMENGINE_INFERENCERS, locations=['sera_mm.apis'])
FUNCTIONS = Registry('function', parent=MMENGINE_FUNCTIONS, locations=['sera_mm.datasets'])
