"""check_shared_settings: each quantity that several keys of a config must
agree on (sentence length, mask threshold, test splits) has one value."""
import os.path as osp

import pytest
from mmengine.config import Config

from helpers.configs import config_files
from helpers.paths import REPO
from sera_mm.engine.runner import SHARED_SETTINGS, SharedSettingError, check_shared_settings

SERA = 'configs/sera/sera_dinov2-b_refcoco.py'


def load(path: str) -> Config:
    return Config.fromfile(osp.join(REPO, path))


@pytest.mark.parametrize('path', config_files(bases=False))
def test_every_config_has_one_value_of_each(path):
    check_shared_settings(load(path))


def test_threshold_set_on_the_model_alone_is_refused():
    cfg = load(SERA)
    cfg.merge_from_dict({'model.test_cfg.threshold': 0.4})
    with pytest.raises(SharedSettingError) as e:
        check_shared_settings(cfg)
    msg = str(e.value)
    assert 'model.test_cfg.threshold=0.4' in msg
    assert 'val_evaluator.threshold=0.35' in msg and 'test_evaluator.threshold=0.35' in msg


def test_threshold_set_everywhere_passes():
    cfg = load(SERA)
    cfg.merge_from_dict({'model.test_cfg.threshold': 0.4, 'val_evaluator.threshold': 0.4,
                         'test_evaluator.threshold': 0.4})
    check_shared_settings(cfg)


def test_context_length_of_the_encoder_alone_is_refused():
    cfg = load(SERA)
    cfg.merge_from_dict({'model.text_encoder.context_length': 22})
    with pytest.raises(SharedSettingError, match='model.text_encoder.context_length=22'):
        check_shared_settings(cfg)
    check_shared_settings(cfg, ('threshold', 'test_splits'))  # the others still agree


def test_loop_splits_that_differ_from_test_splits_are_refused():
    cfg = load(SERA)
    cfg.test_cfg = dict(type='MultiSplitTestLoop', splits=['val'])
    with pytest.raises(SharedSettingError, match=r"test_cfg.splits=\['val'\]"):
        check_shared_settings(cfg)
    cfg.test_cfg = dict(type='MultiSplitTestLoop', splits=list(cfg.test_splits))
    check_shared_settings(cfg)


def test_unknown_check_name():
    with pytest.raises(KeyError, match='known'):
        check_shared_settings({}, ('no_such_quantity', ))
    assert set(SHARED_SETTINGS) == {'context_length', 'threshold', 'test_splits'}
