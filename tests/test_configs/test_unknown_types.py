"""A config type that names no registered class: building the model names
it (tests/test_configs/conftest.py registers the modules)."""
import pytest
from mmengine.config import Config

from sera_mm.registry import MODELS
from helpers.paths import TINY_CONFIG


def _misspelt_config() -> Config:
    cfg = Config.fromfile(TINY_CONFIG)
    cfg.model.neck.fusion_cfg.router.type = 'NoSuchRouter'
    return cfg


def test_config_type_that_names_no_registered_class():
    """Building the model (Runner.from_cfg) names the unknown class."""
    with pytest.raises(KeyError) as e:
        MODELS.build(_misspelt_config().model)
    assert 'NoSuchRouter' in str(e.value)
