"""BinaryCrossEntropyLoss: mmseg's sigmoid CrossEntropyLoss(avg_non_ignore)
value, computed without a host-device sync."""
from unittest import mock

import pytest
import torch

from sera_mm.models.losses import BinaryCrossEntropyLoss
from sera_mm.registry import MODELS

MMSEG_BCE = dict(type='mmseg.CrossEntropyLoss', use_sigmoid=True, avg_non_ignore=True,
                 loss_weight=0.7, loss_name='loss_bce')


def _targets(b=3, size=16):
    g = torch.Generator().manual_seed(0)
    hard = torch.randint(0, 2, (b, size, size), generator=g)
    soft = torch.rand(b, size, size, generator=g)
    soft[:, :4] = 0.
    soft[:, -4:] = 1.
    return hard, soft


@pytest.mark.parametrize('kind', ['hard', 'soft'])
@pytest.mark.parametrize('ignored', [0, 40, 'all'])
def test_equals_mmseg_sigmoid_cross_entropy(kind, ignored):
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 16, 16) * 3
    hard, soft = _targets()
    target = (hard if kind == 'hard' else soft).clone()
    if ignored == 'all':
        target[:] = 255
    elif ignored:
        target.view(-1)[torch.randperm(target.numel())[:ignored]] = 255
    ours = BinaryCrossEntropyLoss(loss_weight=0.7)
    got = ours(logits, target, ignore_index=255)
    if ignored == 'all':  # (mmseg's fails here: max() of nothing)
        assert got == 0
        return
    theirs = MODELS.build(MMSEG_BCE)
    want = theirs(logits, target.clone(), ignore_index=255)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    # gradients too
    logits.requires_grad_(True)
    g_ours, = torch.autograd.grad(ours(logits, target, ignore_index=255), logits)
    g_theirs, = torch.autograd.grad(theirs(logits, target.clone(), ignore_index=255), logits)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-8)


def test_ignored_pixels_do_not_count():
    logits = torch.randn(2, 1, 8, 8)
    _, soft = _targets(2, 8)
    loss = BinaryCrossEntropyLoss()
    masked = soft.clone()
    masked[:, :2] = 255
    changed = logits.clone()
    changed[:, :, :2] = 1e4  # would dominate if the ignored pixels counted
    assert torch.allclose(loss(logits, masked), loss(changed, masked))
    assert not torch.allclose(loss(logits, soft), loss(changed, soft))


def test_no_host_device_sync():
    """Neither .item() nor a tensor's truth value (the syncs of mmseg's)."""
    logits = torch.randn(2, 1, 8, 8)
    hard, _ = _targets(2, 8)

    def refuse(*args, **kwargs):
        raise AssertionError('synchronises')

    with mock.patch.object(torch.Tensor, 'item', refuse), \
            mock.patch.object(torch.Tensor, '__bool__', refuse):
        BinaryCrossEntropyLoss()(logits, hard, ignore_index=255)
        with pytest.raises(AssertionError, match='synchronises'):
            MODELS.build(MMSEG_BCE)(logits, hard, ignore_index=255)


def test_bf16_logits_give_a_float32_loss():
    logits = torch.randn(2, 1, 8, 8).bfloat16()
    hard, _ = _targets(2, 8)
    assert BinaryCrossEntropyLoss()(logits, hard).dtype == torch.float32
