import pytest
import torch
import torch.nn.functional as F

from sera_mm.models.decode_heads import DynamicConvHead
from sera_mm.models.utils import TextFeatures
from sera_mm.registry import MODELS

BCE = dict(type='mmseg.CrossEntropyLoss', use_sigmoid=True, avg_non_ignore=True,
           loss_weight=1.0, loss_name='loss_bce')


def _head(**kwargs):
    cfg = dict(type='DynamicConvHead', in_channels=16, channels=8, text_channels=12)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _text(b=3, c=12):
    return TextFeatures(torch.randn(b, 4, c), torch.randn(b, c),
                        torch.zeros(b, 4, dtype=torch.bool))


def test_head_upsamples_four_times_to_one_channel():
    head = _head()
    assert isinstance(head, DynamicConvHead)
    assert head(torch.randn(3, 16, 5, 7), _text()).shape == (3, 1, 20, 28)


def test_mid_channels_sets_the_first_upsampling_conv_width():
    convs = [m for m in _head(mid_channels=6).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(16, 6), (6, 8), (8, 8)]
    default = [m for m in _head().modules() if isinstance(m, torch.nn.Conv2d)]
    assert (default[0].in_channels, default[0].out_channels) == (16, 16)


def test_dynamic_conv_equals_a_per_sample_loop():
    torch.manual_seed(0)
    head = _head(kernel_size=3)
    x = torch.randn(3, 8, 6, 5)
    s = torch.randn(3, 12)
    params = head.kernel_proj(s)
    expected = torch.cat([
        F.conv2d(x[i:i + 1], params[i, :-1].reshape(1, 8, 3, 3), params[i, -1:], padding=1)
        for i in range(3)
    ])
    torch.testing.assert_close(head.dynamic_conv(x, s), expected)


def test_bce_loss_equals_torch_on_the_nearest_downsampled_mask():
    torch.manual_seed(0)
    head = _head()
    x, text = torch.randn(3, 16, 4, 4), _text()
    gt = (torch.rand(3, 1, 64, 64) > 0.5).long()
    losses = head.loss(x, text, gt)
    assert set(losses) == {'loss_bce'}
    logits = head(x, text)
    target = gt[:, :, ::4, ::4].float()  # nearest x1/4 keeps pixel 4i of each 4
    torch.testing.assert_close(losses['loss_bce'],
                               F.binary_cross_entropy_with_logits(logits, target))


def test_bce_and_dice_together_and_ignored_pixels():
    torch.manual_seed(0)
    head = _head(loss_decode=[
        dict(BCE, loss_weight=2.0),
        dict(type='BinaryDiceLoss', eps=1.0, loss_weight=0.5)
    ])
    logits = torch.randn(3, 1, 8, 8)
    gt = (torch.rand(3, 1, 8, 8) > 0.5).long()
    gt[:, :, :2] = 255  # ignored rows
    losses = head.loss_by_feat(logits, gt)
    assert set(losses) == {'loss_bce', 'loss_dice'}
    valid = (gt != 255).float()
    target = gt.float() * valid
    bce = F.binary_cross_entropy_with_logits(logits[valid.bool()], target[valid.bool()])
    torch.testing.assert_close(losses['loss_bce'], 2.0 * bce)
    p = logits.sigmoid() * valid
    inter = (p * target).flatten(1).sum(1)
    dice = (2 * inter + 1) / (p.flatten(1).sum(1) + target.flatten(1).sum(1) + 1)
    torch.testing.assert_close(losses['loss_dice'], 0.5 * (1 - dice).mean())


def test_binary_dice_loss_is_zero_for_a_perfect_prediction():
    dice = MODELS.build(dict(type='BinaryDiceLoss', eps=1e-6))
    target = torch.zeros(2, 6, 6, dtype=torch.long)
    target[:, 1:4, 2:5] = 1
    logits = (target[:, None].float() * 2 - 1) * 100
    assert dice(logits, target).item() == pytest.approx(0.0, abs=1e-5)
    assert dice(-logits, target).item() == pytest.approx(1.0, abs=1e-5)


def test_mmseg_dice_loss_scores_one_channel_logits_against_the_background():
    """Why BinaryDiceLoss exists: mmseg's DiceLoss, given 1-channel logits
    and the B x H x W label its losses take, one-hot encodes the label and
    keeps class 0, so a perfect foreground prediction gets the worst loss."""
    mmseg_dice = MODELS.build(dict(type='mmseg.DiceLoss', use_sigmoid=True, eps=1e-6,
                                   naive_dice=True))
    target = torch.zeros(2, 6, 6, dtype=torch.long)
    target[:, 1:4, 2:5] = 1
    perfect = (target[:, None].float() * 2 - 1) * 100
    assert mmseg_dice(perfect, target).item() > 0.99
    assert mmseg_dice(-perfect, target).item() < 0.01


def _soft_mask(b=3, size=64, seed=0):
    """Soft masks as Letterbox(mode='affine', soft_masks=True) gives them:
    k / 255 values, mostly exact 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 256, (b, 1, size, size), generator=g)
    k[:, :, :size // 3] = 0
    k[:, :, -size // 3:] = 255
    return (k.double() / 255.).float()


@pytest.mark.parametrize('avg_non_ignore', [True, False])
def test_mmseg_sigmoid_ce_with_float_labels_is_torch_bce(avg_non_ignore):
    """mmseg's CrossEntropyLoss(use_sigmoid=True) given float labels keeps
    them (``label.float()``) and averages over all pixels: DETRIS's
    ``F.binary_cross_entropy_with_logits(pred, target)``. It divides the sum
    by ``count + float32 eps`` where torch takes the mean, hence equality up
    to float32 rounding (assert_close's default rtol 1.3e-6)."""
    torch.manual_seed(0)
    loss = MODELS.build(dict(BCE, avg_non_ignore=avg_non_ignore))
    logits = torch.randn(3, 1, 16, 16) * 3
    target = _soft_mask(size=16)
    got = loss(logits, target.squeeze(1), ignore_index=255)
    torch.testing.assert_close(got, F.binary_cross_entropy_with_logits(logits, target))
    # and it is not what a long (rounded-down) label would give
    rounded = loss(logits, target.squeeze(1).long(), ignore_index=255)
    assert not torch.isclose(got, rounded)


def test_soft_target_loss_is_torch_bce_on_the_nearest_downsampled_target():
    """DETRIS's loss: F.interpolate(mask, logits size, mode='nearest'), then
    BCE with logits on the soft values (not rounded to 0/1)."""
    torch.manual_seed(0)
    head = _head()
    x, text = torch.randn(3, 16, 4, 4), _text()
    gt = _soft_mask()
    losses = head.loss(x, text, gt)
    logits = head(x, text)
    target = F.interpolate(gt, logits.shape[-2:], mode='nearest')
    assert ((target > 0) & (target < 1)).any()
    torch.testing.assert_close(losses['loss_bce'],
                               F.binary_cross_entropy_with_logits(logits, target))
    # float64 soft masks are taken as float32 as well
    torch.testing.assert_close(head.loss_by_feat(logits, gt.double())['loss_bce'],
                               losses['loss_bce'])


def test_soft_targets_with_ignored_pixels_and_dice():
    torch.manual_seed(0)
    head = _head(loss_decode=[BCE, dict(type='BinaryDiceLoss', eps=1.0)])
    logits = torch.randn(3, 1, 8, 8)
    gt = _soft_mask(size=8)
    gt[:, :, :2] = 255.  # ignored rows (e.g. preprocessor padding)
    losses = head.loss_by_feat(logits, gt)
    valid = gt != 255
    target = gt * valid
    bce = F.binary_cross_entropy_with_logits(logits[valid], target[valid])
    torch.testing.assert_close(losses['loss_bce'], bce)
    p = logits.sigmoid() * valid
    inter = (p * target).flatten(1).sum(1)
    dice = (2 * inter + 1) / (p.flatten(1).sum(1) + target.flatten(1).sum(1) + 1)
    torch.testing.assert_close(losses['loss_dice'], (1 - dice).mean())


def test_binary_dice_loss_with_a_soft_target_pushes_towards_its_half_contour():
    """The gradient in p_i has the sign of t_i - D/2: the soft Dice sharpens
    a soft target instead of fitting it (as its docstring says)."""
    dice = MODELS.build(dict(type='BinaryDiceLoss', eps=0.0))
    target = torch.tensor([[[1.0, 0.9, 0.6, 0.2, 0.0]]])
    logits = torch.zeros(1, 1, 1, 5, requires_grad=True)
    dice(logits, target).backward()
    p = torch.full((5, ), 0.5)
    d = 2 * (p * target.flatten()).sum() / (p.sum() + target.sum())
    descent = -logits.grad.flatten()
    assert torch.equal(descent > 0, target.flatten() > d / 2)
