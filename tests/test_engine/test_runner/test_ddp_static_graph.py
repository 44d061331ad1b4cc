"""DDP without the search for unused parameters, and SERA under SyncBN.

Every trainable parameter takes part in every step: SERA-Fusion's experts
that no sample of a rank picked get a gradient of zeros from a zero-weighted
term (``sera_mm.models.routers.zero_touch``), without running. So the
configs set ``find_unused_parameters=False``; the two-process gloo run here
shows it (ranks that leave experts unpicked, weights equal on both ranks
after each step and equal to one process on the global batch), and that
without the term DDP refuses the second step.

SyncBN policy: the Runner converts every BatchNorm to SyncBN with
``sync_bn='torch'`` (DETRIS's recipe); SERA-Fusion's experts keep a
per-rank BatchNorm on their sub-batch (``LocalBatchNorm2d``, which the
conversion does not touch), because a synchronised norm in an expert would
wait for ranks that did not pick it.
"""
import json
import os.path as osp
import socket

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.model import convert_sync_batchnorm, revert_sync_batchnorm
from mmengine.registry import DefaultScope
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import sera_mm
from sera_mm.models.fusion import LocalBatchNorm2d, SERAFusion
from sera_mm.registry import MODELS
from helpers import ddp_steps
from helpers.configs import REPO, config_files
from helpers.forced_routing import forced_selection
from helpers.small_models import make_batch, small_model_cfg

SERA_B = 'configs/sera/sera_dinov2-b_refcoco.py'
DETRIS_B = 'configs/detris/detris_dinov2-b_refcoco.py'
#: DDP against one process on the same global batch ('compare' scenario):
#: the same function, summed in another order (the all-reduce's mean of two
#: half-batch means against one mean), so up to float32 rounding.
RTOL, ATOL = 1e-4, 1e-6


@pytest.fixture(autouse=True)
def sera_scope():
    sera_mm.register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('sera_mm'):
        yield


def _loss(model, cfg, batch_size=4):
    inputs, samples = make_batch(cfg, batch_size)
    losses = model(inputs, samples, mode='loss')
    return sum(v for k, v in losses.items() if k.startswith('loss'))


def test_every_trainable_parameter_gets_a_gradient_in_every_step():
    """Every config (shrunk; one per distinct model): after one training
    step in which each level keeps only its first k experts for every
    sample, every trainable parameter has a gradient (what DDP with
    find_unused_parameters=False needs); the unpicked experts' are zeros,
    and the zero term leaves the loss as it was."""
    seen = set()
    for path in config_files(bases=False):
        cfg = small_model_cfg(path)
        key = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        torch.manual_seed(0)
        model = MODELS.build(cfg).train()
        fusions = [m for m in model.modules() if isinstance(m, SERAFusion)]
        k = fusions[0].router.top_k if fusions else 0
        selection = [torch.arange(k).expand(4, k) for _ in fusions]
        with forced_selection(model, selection):
            torch.manual_seed(1)
            loss = _loss(model, cfg)
            loss.backward()
            with torch.no_grad():  # the same forward without the zero term
                torch.manual_seed(1)
                assert torch.equal(_loss(model, cfg), loss.detach()), path
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f'{path}: no gradient for {missing}'
        for fusion in fusions:
            for e, expert in enumerate(fusion.experts):
                # (a picked expert starting at zero: only its scale's is non-zero)
                assert any(p.grad.any() for p in expert.parameters()) == (e < k), (path, e)
    assert len(seen) >= 10


def test_local_batch_norm_is_batch_norm():
    """LocalBatchNorm2d computes nn.BatchNorm2d (training: output, input and
    parameter gradients, running statistics; eval) and holds its state."""
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(6, eps=1e-3, momentum=0.2)
    local = LocalBatchNorm2d(6, eps=1e-3, momentum=0.2)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.normal_()
    local.load_state_dict(ref.state_dict(), strict=True)
    assert list(local.state_dict()) == list(ref.state_dict())
    for _ in range(3):
        x = torch.randn(3, 6, 4, 5, requires_grad=True)
        outs = [m(x) for m in (ref, local)]
        grads = [torch.autograd.grad(o.pow(2).sum(), [x, m.weight, m.bias])
                 for o, m in zip(outs, (ref, local))]
        assert torch.equal(outs[0], outs[1])
        assert all(torch.equal(a, b) for a, b in zip(*grads))
    for name, value in ref.state_dict().items():
        assert torch.equal(value, local.state_dict()[name]), name
    x = torch.randn(2, 6, 3, 3)
    assert torch.equal(ref.eval()(x), local.eval()(x))


@pytest.mark.parametrize('path', [SERA_B, DETRIS_B])
def test_sync_bn_conversion_keeps_the_experts_norms_local(path):
    """What the Runner does with sync_bn='torch' (mmengine's
    convert_sync_batchnorm): every BatchNorm becomes SyncBN except the
    SERA-Fusion experts' (LocalBatchNorm2d, the default of SERAFusion), the
    state dict is unchanged, and reverting gives BatchNorm back."""
    assert Config.fromfile(osp.join(REPO, DETRIS_B)).sync_bn == 'torch'
    torch.manual_seed(0)
    model = MODELS.build(small_model_cfg(path))
    state = model.state_dict()
    local = {n for n, m in model.named_modules() if isinstance(m, LocalBatchNorm2d)}
    batch_norms = {n for n, m in model.named_modules() if isinstance(m, _BatchNorm)}
    if path == SERA_B:  # phi of the boundary and shape experts, per level
        assert len(local) == 2 * 3
        assert all('.experts.' in n for n in local)
    else:
        assert not local
    assert batch_norms and not any('.experts.' in n for n in batch_norms)
    converted = convert_sync_batchnorm(model, 'torch')
    types = {n: type(m) for n, m in converted.named_modules()}
    assert {n for n, t in types.items() if t is nn.SyncBatchNorm} == batch_norms
    assert {n for n, t in types.items() if t is LocalBatchNorm2d} == local
    assert not any(isinstance(m, _BatchNorm) and type(m) is not nn.SyncBatchNorm
                   for m in converted.modules())
    assert list(converted.state_dict()) == list(state)
    assert all(torch.equal(v, state[k]) for k, v in converted.state_dict().items())
    reverted = revert_sync_batchnorm(converted)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in reverted.modules())
    assert {n for n, m in reverted.named_modules() if isinstance(m, LocalBatchNorm2d)} == local


def test_fusion_refuses_synced_expert_norms_in_distributed_training(monkeypatch):
    """An expert's BatchNorm converted to SyncBN (e.g. built as type='BN'):
    in distributed training SERA-Fusion raises instead of waiting for ranks
    that did not pick the expert; in one process, or in eval, it runs."""
    torch.manual_seed(0)
    fusion = MODELS.build(dict(type='SERAFusion', channels=16, norm_cfg=dict(type='BN'),
                               expert_cfgs=dict(context=dict(num_heads=4))))
    fusion = convert_sync_batchnorm(fusion, 'torch')
    assert any(isinstance(m, nn.SyncBatchNorm) for m in fusion.experts.modules())
    x = torch.randn(2, 16, 4, 4)
    fusion.eval()(x)
    monkeypatch.setattr(torch.distributed, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.distributed, 'get_world_size', lambda group=None: 2)
    fusion.eval()(x)
    with pytest.raises(RuntimeError, match=r"SyncBatchNorm.*norm_cfg=dict\(type='LocalBN'\)"):
        fusion.train()(x)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    """Both ranks' results of every scenario of helpers/ddp_steps.py."""
    out = str(tmp_path_factory.mktemp('ddp'))
    mp.start_processes(ddp_steps.worker, args=(free_port(), out), nprocs=ddp_steps.WORLD_SIZE,
                       join=True, start_method='spawn')
    return {(s, r): torch.load(osp.join(out, f'{s}_rank{r}.pt'), weights_only=False)
            for s in ddp_steps.SCENARIOS for r in range(ddp_steps.WORLD_SIZE)}


def _check_ranks_agree(results, scenario):
    ranks = [results[scenario, r] for r in range(ddp_steps.WORLD_SIZE)]
    for rank in ranks:
        assert isinstance(rank, list), rank  # else the worker's traceback
    assert len(ranks[0]) == len(ddp_steps.SELECTIONS)
    for step, (a, b) in enumerate(zip(*ranks)):
        assert a.keys() == b.keys()
        differ = [n for n in a if not torch.equal(a[n], b[n])]
        assert not differ, f'step {step}: ranks differ in {differ}'
    return ranks[0]


@pytest.mark.integration
def test_ddp_without_unused_parameter_search_equals_one_process(two_ranks):
    """'compare': 2 ranks x 2 samples, find_unused_parameters=False, each rank
    leaving experts unpicked in every step (not the same ones as the other
    rank): the weights are bitwise equal on both ranks after each step, and
    equal (RTOL, ATOL) to one process training on the 4 samples with the
    same selections. The scenario's model computes each sample alone (see
    ddp_steps.build_model: GroupNorm in the experts, the other BatchNorms on
    running statistics, no batch terms in the MoE loss, no noise, no
    dropout): with BatchNorm on the batch, statistics over 2 samples per
    rank are not those over 4, by construction, unless SyncBN (GPUs only
    in torch)."""
    snapshots = _check_ranks_agree(two_ranks, 'compare')
    model = ddp_steps.build_model('compare')
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    reference = ddp_steps.train_steps(model, 'compare')
    for step, (ddp, one) in enumerate(zip(snapshots, reference)):
        for name, value in one.items():
            assert torch.allclose(ddp[name], value, rtol=RTOL, atol=ATOL), \
                f'step {step}, {name}: max |DDP - one process| = ' \
                f'{(ddp[name] - value).abs().max():.3g}'
    # every expert of every level trained (each is picked by some rank in
    # some step, never by both ranks in all steps)
    final = reference[-1]
    for level in range(3):
        for e in range(4):
            prefix = f'neck.fusions.{level}.experts.{e}.'
            assert any(not torch.equal(final[n], initial[n]) for n in final
                       if n.startswith(prefix)), prefix


@pytest.mark.integration
def test_ddp_trains_the_config_model_with_per_rank_expert_norms(two_ranks):
    """'train': the toy SERA as its config trains it (BatchNorm on each
    rank's batch, the experts' LocalBN on their sub-batch per rank, the full
    MoE loss, noise, dropout), find_unused_parameters=False: the ranks pick
    different experts in different counts, nothing waits, and the weights
    stay bitwise equal on both ranks after each step."""
    _check_ranks_agree(two_ranks, 'train')


@pytest.mark.integration
def test_without_the_zero_term_ddp_refuses_the_next_step(two_ranks):
    """The control: with ``zero_touch`` switched off, the unpicked experts
    get no gradient and DDP (find_unused_parameters=False) stops at the
    next step's forward on both ranks."""
    for rank in range(ddp_steps.WORLD_SIZE):
        error = two_ranks['no_touch', rank]
        assert isinstance(error, str), 'DDP accepted unused parameters'
        assert 'Expected to have finished reduction in the prior iteration' in error, error
