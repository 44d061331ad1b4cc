"""A config type that names no registered class: building the model names
it, and the tools' preflight names its key before anything is built
(tests/test_configs/conftest.py registers the modules)."""
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


def test_preflight_names_the_config_key_of_an_unknown_type():
    """The tools' preflight names the key, before anything is built."""
    from sera_mm.utils.preflight import check_config_inputs
    cfg = _misspelt_config()
    cfg.train_dataloader.dataset.pipeline[0].type = 'LoadImageFromFlie'
    with pytest.raises(KeyError) as e:
        check_config_inputs(cfg, mode='train')
    assert 'model.neck.fusion_cfg.router.type' in str(e.value)
    assert 'NoSuchRouter' in str(e.value)
    assert 'train_dataloader.dataset.pipeline[0].type' in str(e.value)
