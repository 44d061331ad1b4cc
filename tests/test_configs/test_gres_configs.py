"""The GRES configs of DETRIS-B and SERA-B: at toy sizes they train on
no-target samples and answer "no target" at test time; at full size their
weights are DETRIS-B's (SERA-B's) plus the presence head's, so a converted
DETRIS checkpoint (which fits DETRIS-B: tests/test_tools/test_detris_converter.py)
warm-starts them with only the head new."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from sera_mm.registry import MODELS
from sera_mm.utils import disable_pretrained
from helpers.configs import REPO
from helpers.small_models import make_batch, small_model_cfg

GRES = {'configs/gres/detris_dinov2-b_grefcoco.py': 'configs/detris/detris_dinov2-b_refcoco.py',
        'configs/gres/sera_dinov2-b_grefcoco.py': 'configs/sera/sera_dinov2-b_refcoco.py'}


@pytest.mark.parametrize('path', sorted(GRES))
def test_gres_config_trains_and_tests_at_toy_size(path):
    torch.manual_seed(0)
    model_cfg = small_model_cfg(path)
    model = MODELS.build(model_cfg).train()
    inputs, samples = make_batch(model_cfg, 4)
    for ds in samples[1::2]:
        ds.set_metainfo(dict(no_target=True, num_targets=0))
        ds.gt_sem_seg.data.zero_()
    for ds in samples[::2]:
        ds.set_metainfo(dict(no_target=False, num_targets=1))
    losses = model(inputs, samples, mode='loss')
    assert torch.isfinite(losses['loss_presence'])
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    assert model.presence_head.mlp[-1].weight.grad.abs().sum() > 0
    model.eval()
    model.test_cfg['no_target_threshold'] = 0.  # every sentence: "no target"
    with torch.no_grad():
        predictions = model(inputs, samples, mode='predict')
    for ds in predictions:
        assert 0. < float(ds.no_target_score) < 1.
        assert not ds.pred_sem_seg.data.any()


@pytest.mark.parametrize('path', sorted(GRES))
def test_gres_model_is_the_refcoco_model_plus_the_presence_head(path):
    shapes = {}
    for config in (path, GRES[path]):
        cfg = Config.fromfile(osp.join(REPO, config))
        disable_pretrained(cfg.model)
        with torch.device('meta'):
            model = MODELS.build(cfg.model)
        shapes[config] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    gres, refcoco = shapes[path], shapes[GRES[path]]
    new = {k for k in gres if k not in refcoco}
    assert new and all(k.startswith('presence_head.') for k in new)
    assert {k: gres[k] for k in refcoco} == refcoco
