import copy

import pytest
import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from sera_mm.models.segmentors import ReferringSegmentor
from sera_mm.models.utils import RoutingResult, TextFeatures
from sera_mm.registry import MODELS

CLIP_MEAN = [122.7709383, 116.7460125, 104.09373615]
CLIP_STD = [68.5005327, 66.6321579, 70.32316305]
SIZE = 32  # input side; patch 8 -> 4 x 4 grid -> 16 x 16 logits
CONTEXT = 7


# --- stand-ins for the encoders and the fusion (replaced by the real tiny
# modules once they exist) ---------------------------------------------------
@MODELS.register_module(name='StubTextEncoder', force=True)
class StubTextEncoder(nn.Module):

    def __init__(self, vocab_size=50, width=24):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.proj = nn.Linear(width, width)

    def forward(self, tokens):
        words = self.embed(tokens)
        pad_mask = tokens == 0
        eot = (~pad_mask).sum(1) - 1
        sentence = self.proj(words[torch.arange(len(tokens)), eot])
        return TextFeatures(words, sentence, pad_mask)


@MODELS.register_module(name='StubBackbone', force=True)
class StubBackbone(nn.Module):

    def __init__(self, embed_dims=16, patch_size=8, num_levels=2, text_channels=24):
        super().__init__()
        self.embed_dims = embed_dims
        self.patch = nn.Conv2d(3, embed_dims, patch_size, patch_size)
        self.text_bias = nn.Linear(text_channels, embed_dims)
        self.blocks = nn.ModuleList(nn.Conv2d(embed_dims, embed_dims, 1) for _ in range(num_levels))

    def forward(self, x, text=None):
        x = self.patch(x) + self.text_bias(text.sentence)[:, :, None, None]
        outs = []
        for block in self.blocks:
            x = x + block(x).relu()
            outs.append(x)
        return tuple(outs)


@MODELS.register_module(name='StubFusion', force=True)
class StubFusion(nn.Module):

    def __init__(self, channels, num_experts=4, top_k=2):
        super().__init__()
        self.router = nn.Linear(channels, num_experts)

    def forward(self, x):
        logits = self.router(x.mean((2, 3)))
        weights = logits.softmax(-1)
        return x * (1 + weights[:, :1, None, None]), RoutingResult(logits, weights, None)


@MODELS.register_module(name='StubMoELoss', force=True)
class StubMoELoss(nn.Module):

    def forward(self, routings):
        z = sum(r.logits.square().mean() for r in routings)
        return dict(loss_moe=1e-2 * z, moe_z=z.detach())


def model_cfg(with_fusion=True, dice=False):
    head_losses = [dict(type='mmseg.CrossEntropyLoss', use_sigmoid=True, loss_name='loss_bce')]
    if dice:
        head_losses.append(dict(type='BinaryDiceLoss'))
    return dict(
        type='ReferringSegmentor',
        data_preprocessor=dict(type='mmseg.SegDataPreProcessor', mean=CLIP_MEAN, std=CLIP_STD,
                               bgr_to_rgb=True),
        text_encoder=dict(type='StubTextEncoder', width=24),
        backbone=dict(type='StubBackbone', embed_dims=16, patch_size=8, num_levels=2,
                      text_channels=24),
        neck=dict(type='TextGatedNeck', in_channels=[16, 16], channels=32, text_channels=24,
                  fusion_cfg=dict(type='StubFusion', top_k=2) if with_fusion else None),
        decoder=dict(type='VisionLanguageDecoder', num_layers=1, channels=32, text_channels=24,
                     num_heads=4, feedforward_channels=64),
        decode_head=dict(type='DynamicConvHead', in_channels=32, channels=16, text_channels=24,
                         loss_decode=head_losses),
        moe_loss=dict(type='StubMoELoss') if with_fusion else None,
        test_cfg=dict(threshold=0.35))


def letterbox_meta(ori_shape, size=SIZE):
    h, w = ori_shape
    scale = min(size / h, size / w)
    rh, rw = round(h * scale), round(w * scale)
    left, top = (size - rw) // 2, (size - rh) // 2
    return dict(scale=scale, pad=(left, top, size - rw - left, size - rh - top),
                resized_shape=(rh, rw), ori_shape=(h, w))


def make_sample(tokens, ori_shape, gt=None, training=True):
    ds = SegDataSample()
    ds.set_metainfo(dict(ori_shape=ori_shape, img_shape=(SIZE, SIZE),
                         letterbox=letterbox_meta(ori_shape)))
    ds.text_tokens = torch.tensor(tokens + [0] * (CONTEXT - len(tokens)))
    if gt is not None:
        ds.gt_sem_seg = PixelData(data=gt)
    return ds


def train_batch():
    """Two letterboxed images whose referent is the left half."""
    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=g)
            for _ in range(2)]
    gt = torch.zeros(1, SIZE, SIZE, dtype=torch.uint8)
    gt[..., :SIZE // 2] = 1
    samples = [make_sample([1, 5, 9, 2], (20, 30), gt.clone()),
               make_sample([1, 7, 2], (30, 20), gt.clone())]
    return dict(inputs=imgs, data_samples=samples)


def build(**kwargs):
    torch.manual_seed(0)
    model = MODELS.build(model_cfg(**kwargs))
    assert isinstance(model, ReferringSegmentor)
    return model


# --- tests --------------------------------------------------------------------
def test_loss_mode_returns_head_and_moe_losses_and_keeps_routings():
    model = build(dice=True)
    data = model.data_preprocessor(train_batch(), training=True)
    assert data['inputs'].shape == (2, 3, SIZE, SIZE)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_bce', 'loss_dice', 'loss_moe', 'moe_z'}
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(model.last_routings) == 2
    assert all(not r.logits.requires_grad and r.logits.shape == (2, 4)
               for r in model.last_routings)


def test_loss_mode_without_fusion_has_no_moe_loss():
    model = build(with_fusion=False)
    data = model.data_preprocessor(train_batch(), training=True)
    assert set(model(**data, mode='loss')) == {'loss_bce'}
    assert model.last_routings == []


def test_tensor_mode_gives_head_resolution_logits():
    model = build().eval()
    data = model.data_preprocessor(train_batch(), training=False)
    logits = model(**data, mode='tensor')
    assert logits.shape == (2, 1, SIZE // 2, SIZE // 2)


def test_predict_gives_masks_at_each_original_size():
    model = build().eval()
    batch = train_batch()
    for ds, ori in zip(batch['data_samples'], [(21, 33), (40, 12)]):
        ds.set_metainfo(dict(ori_shape=ori, letterbox=letterbox_meta(ori)))
        ds.gt_sem_seg = PixelData(data=torch.zeros(1, *ori, dtype=torch.uint8))
    with torch.no_grad():
        results = model.val_step(batch)
    for ds, ori in zip(results, [(21, 33), (40, 12)]):
        assert ds.seg_logits.data.shape == (1, *ori)
        assert ds.pred_sem_seg.data.shape == (1, *ori)
        assert set(ds.pred_sem_seg.data.unique().tolist()) <= {0, 1}
        torch.testing.assert_close(ds.pred_sem_seg.data,
                                   (ds.seg_logits.data.sigmoid() > 0.35).long())


@pytest.mark.parametrize('at_input_size', [True, False])
@pytest.mark.parametrize('extra', [0, 4])
def test_predict_undoes_the_letterbox(at_input_size, extra):
    """Logits positive exactly on the image (not on the letterbox padding)
    map to an all-ones mask of each original size, also behind the data
    preprocessor's extra bottom/right padding (``padding_size``)."""
    model = build().eval()
    oris = [(10, 20), (20, 10), (13, 17)]
    side = SIZE + extra
    logits = torch.full((len(oris), 1, side, side), -10.)
    samples = []
    for i, ori in enumerate(oris):
        ds = make_sample([1, 2], ori, training=False)
        ds.set_metainfo(dict(padding_size=[0, extra, 0, extra]))
        left, top, _, _ = ds.metainfo['letterbox']['pad']
        rh, rw = ds.metainfo['letterbox']['resized_shape']
        logits[i, :, top:top + rh, left:left + rw] = 10.
        samples.append(ds)
    if not at_input_size:  # as the head gives them: here 1/2 of the input size
        logits = logits[..., ::2, ::2]
    results = model.postprocess_result(logits, samples, input_shape=(side, side))
    for ds, ori in zip(results, oris):
        assert ds.pred_sem_seg.data.shape == (1, *ori)
        assert ds.pred_sem_seg.data.all(), ds.pred_sem_seg.data


def test_predict_maps_a_known_region_back_to_the_original_pixels():
    """A box in the original image, letterboxed by hand, comes back in place."""
    model = build().eval()
    ori = (16, 32)  # scale 1, pad 8 rows above and below
    ds = make_sample([1, 2], ori, training=False)
    assert ds.metainfo['letterbox']['pad'] == (0, 8, 0, 8)
    logit = torch.full((1, 1, SIZE, SIZE), -10.)
    logit[..., 8 + 3:8 + 9, 5:20] = 10.
    mask = model.postprocess_result(logit, [ds])[0].pred_sem_seg.data[0]
    expected = torch.zeros(ori, dtype=torch.long)
    expected[3:9, 5:20] = 1
    torch.testing.assert_close(mask, expected)


def test_gradient_reaches_every_trainable_part():
    model = build(dice=True).train()
    data = model.data_preprocessor(train_batch(), training=True)
    losses = model(**data, mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_training_steps_reduce_the_loss_on_a_fixed_batch():
    model = build(dice=True).train()
    optim = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))
    batch = train_batch()
    history = []
    for _ in range(8):
        log_vars = model.train_step(copy.deepcopy(batch), optim)
        history.append(log_vars['loss'].item())
    assert history[-1] < 0.8 * history[0], history


def test_text_tokens_are_required():
    model = build().eval()
    batch = train_batch()
    for ds in batch['data_samples']:
        del ds.text_tokens
    data = model.data_preprocessor(batch, training=False)
    with pytest.raises(KeyError, match='text_tokens'):
        model(**data, mode='tensor')
    with pytest.raises(KeyError, match='unknown test_cfg'):
        MODELS.build(dict(model_cfg(), test_cfg=dict(thr=0.5)))
