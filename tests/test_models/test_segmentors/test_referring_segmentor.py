import copy

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from sera_mm.models.segmentors import ReferringSegmentor
from sera_mm.registry import MODELS
from helpers.detris_reference import detris_letterbox_matrices

CLIP_MEAN = [122.7709383, 116.7460125, 104.09373615]
CLIP_STD = [68.5005327, 66.6321579, 70.32316305]
SIZE = 32  # input side; patch 8 -> 4 x 4 grid -> 16 x 16 logits
CONTEXT = 7


def model_cfg(with_fusion=True, dice=False, top_k=2):
    """A tiny SERA: CLIP text tower (1 layer, width 64), DINOv2 (2 layers,
    width 64, patch 8), SERA-Fusion on both levels, C = 32."""
    head_losses = [dict(type='mmseg.CrossEntropyLoss', use_sigmoid=True, avg_non_ignore=True,
                        loss_name='loss_bce')]
    if dice:
        head_losses.append(dict(type='BinaryDiceLoss'))
    fusion = dict(type='SERAFusion', router=dict(type='NoisyTopKRouter', top_k=top_k),
                  expert_cfgs=dict(context=dict(num_heads=4)))
    return dict(
        type='ReferringSegmentor',
        data_preprocessor=dict(type='mmseg.SegDataPreProcessor', mean=CLIP_MEAN, std=CLIP_STD,
                               bgr_to_rgb=True, size=(SIZE, SIZE)),
        text_encoder=dict(type='OpenCLIPTextEncoder',
                          text_cfg=dict(context_length=17, vocab_size=49408, width=64, heads=2,
                                        layers=1),
                          embed_dim=48, context_length=CONTEXT, frozen=False),
        backbone=dict(type='DINOv2',
                      arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                                feedforward_channels=128),
                      patch_size=8, img_size=64, out_indices=(0, 1)),
        neck=dict(type='TextGatedNeck', in_channels=[64, 64], channels=32, text_channels=48,
                  fusion_cfg=fusion if with_fusion else None),
        decoder=dict(type='VisionLanguageDecoder', num_layers=1, channels=32, text_channels=64,
                     num_heads=4, feedforward_channels=64),
        decode_head=dict(type='DynamicConvHead', in_channels=32, channels=16, text_channels=48,
                         loss_decode=head_losses),
        moe_loss=dict(type='MoERegularizationLoss') if with_fusion else None,
        test_cfg=dict(threshold=0.35))


def letterbox_meta(ori_shape, size=SIZE):
    h, w = ori_shape
    scale = min(size / h, size / w)
    rh, rw = round(h * scale), round(w * scale)
    left, top = (size - rw) // 2, (size - rh) // 2
    return dict(scale=scale, pad=(left, top, size - rw - left, size - rh - top),
                resized_shape=(rh, rw), ori_shape=(h, w))


def make_sample(text, ori_shape, gt=None):
    ds = SegDataSample()
    ds.set_metainfo(dict(ori_shape=ori_shape, img_shape=(SIZE, SIZE),
                         letterbox=letterbox_meta(ori_shape), text=text))
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
    samples = [make_sample('the left half', (20, 30), gt.clone()),
               make_sample('left', (30, 20), gt.clone())]
    return dict(inputs=imgs, data_samples=samples)


def build(**kwargs):
    torch.manual_seed(0)
    model = MODELS.build(model_cfg(**kwargs))
    assert isinstance(model, ReferringSegmentor)
    return model


# --- tests --------------------------------------------------------------------
def test_loss_mode_returns_head_and_moe_losses_and_routing_usage():
    model = build(dice=True)
    state = dict(vars(model))
    data = model.data_preprocessor(train_batch(), training=True)
    assert data['inputs'].shape == (2, 3, SIZE, SIZE)
    losses = model(**data, mode='loss')
    assert {k for k in losses if k.startswith('loss')} == {'loss_bce', 'loss_dice', 'loss_moe'}
    assert 'moe_z' in losses
    assert all(torch.isfinite(v).all() for v in losses.values())
    experts = model.router_experts()
    assert list(experts) == ['fusion.level0', 'fusion.level1']
    usage = {k: v for k, v in losses.items() if k.startswith('routing/')}
    assert set(usage) == {f'routing/{router}.{e}.{stat}' for router, names in experts.items()
                          for e in names for stat in ('freq', 'weight')}
    assert all(v.dim() == 0 and not v.requires_grad for v in usage.values())
    for router, names in experts.items():  # Top-2: two experts per sample, weights sum to 1
        assert sum(float(usage[f'routing/{router}.{e}.freq']) for e in names) == 2
        assert sum(float(usage[f'routing/{router}.{e}.weight']) for e in names) == \
            pytest.approx(1)
    assert vars(model) == state  # the forward keeps nothing on the model


def test_loss_mode_without_fusion_has_no_moe_loss():
    model = build(with_fusion=False)
    data = model.data_preprocessor(train_batch(), training=True)
    assert set(model(**data, mode='loss')) == {'loss_bce'}
    assert model.router_experts() == {}


def test_tensor_mode_gives_head_resolution_logits():
    model = build().eval()
    data = model.data_preprocessor(train_batch())
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


def test_predict_gives_each_sample_its_own_routing():
    model = build().eval()
    with torch.no_grad():
        pair = model.test_step(train_batch())
        alone = [model.test_step({k: v[i:i + 1] for k, v in train_batch().items()})[0]
                 for i in range(2)]
    for both, one in zip(pair, alone):
        assert list(both.routing) == ['fusion.level0', 'fusion.level1']
        for name, routing in both.routing.items():
            assert routing.weights.shape == (4, ) and routing.indices.shape == (2, )
            torch.testing.assert_close(routing.weights, one.routing[name].weights)
            assert torch.equal(routing.indices, one.routing[name].indices)
    assert not torch.equal(pair[0].routing['fusion.level0'].weights,
                           pair[1].routing['fusion.level0'].weights)


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
        ds = make_sample('', ori)
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
    ds = make_sample('', ori)
    assert ds.metainfo['letterbox']['pad'] == (0, 8, 0, 8)
    logit = torch.full((1, 1, SIZE, SIZE), -10.)
    logit[..., 8 + 3:8 + 9, 5:20] = 10.
    mask = model.postprocess_result(logit, [ds])[0].pred_sem_seg.data[0]
    expected = torch.zeros(ori, dtype=torch.long)
    expected[3:9, 5:20] = 1
    torch.testing.assert_close(mask, expected)


def test_gradient_reaches_every_trainable_part():
    # top_k = 4 = E: with Top-2 an expert no sample picked gets no gradient.
    model = build(dice=True, top_k=4).train()
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


def test_the_text_encoder_tokenises_the_sentences_at_its_context_length():
    """encode_text reads each sample's ``text`` and tokenises it with the
    encoder's own context length (CONTEXT, not CLIP's 77 nor the tower's 17)."""
    import open_clip
    model = build().eval()
    samples = train_batch()['data_samples']
    with torch.no_grad():
        text = model.encode_text(samples)
        ref = model.text_encoder(open_clip.tokenize(['the left half', 'left'],
                                                    context_length=CONTEXT))
    assert text.words.shape[:2] == (2, CONTEXT)
    torch.testing.assert_close(text.words, ref.words)
    torch.testing.assert_close(text.sentence, ref.sentence)


def test_the_sentence_is_required():
    model = build().eval()
    batch = train_batch()
    del batch['data_samples'][1].text
    data = model.data_preprocessor(batch)
    with pytest.raises(KeyError, match=r'data samples \[1\] have no `text`'):
        model(**data, mode='tensor')
    with pytest.raises(KeyError, match='unknown test_cfg'):
        MODELS.build(dict(model_cfg(), test_cfg=dict(thr=0.5)))


def test_mmseg_data_preprocessor_is_enough():
    """SegDataPreProcessor keeps the sentence with the sample, stacks the
    masks in training and normalises BGR uint8 images as RGB with CLIP's
    mean and std: no sera_mm preprocessor class is needed."""
    model = build()
    batch = train_batch()
    batch['inputs'][0][:, 0, 0] = torch.tensor([10, 20, 30], dtype=torch.uint8)  # B, G, R
    data = model.data_preprocessor(batch, training=True)
    expected = (torch.tensor([30., 20., 10.]) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(data['inputs'][0, :, 0, 0], expected)
    sample = data['data_samples'][0]
    assert sample.text == 'the left half'
    assert torch.stack([ds.gt_sem_seg.data for ds in data['data_samples']]).shape == \
        (2, 1, SIZE, SIZE)


def test_encode_decode_gives_input_size_logits():
    model = build().eval()
    data = model.data_preprocessor(train_batch(), training=False)
    with torch.no_grad():
        assert model.encode_decode(data['inputs'], data['data_samples']).shape == \
            (2, 1, SIZE, SIZE)


def test_predict_without_letterbox_meta_resizes_to_the_original_size():
    model = build().eval()
    ds = SegDataSample()
    ds.set_metainfo(dict(ori_shape=(8, 12), img_shape=(SIZE, SIZE)))
    logits = torch.full((1, 1, SIZE, SIZE), 10.)
    logits[..., SIZE // 2:, :] = -10.  # bottom half off
    mask = model.postprocess_result(logits, [ds])[0].pred_sem_seg.data[0]
    expected = torch.zeros(8, 12, dtype=torch.long)
    expected[:4] = 1
    torch.testing.assert_close(mask, expected)


# --- DETRIS's test protocol ---------------------------------------------------
DETRIS_TEST_CFG = dict(threshold=0.35, upsample=dict(mode='bicubic', align_corners=True))
DETRIS_SIZE = 448
#: (h, w): landscape, portrait, square, COCO-like odd sizes, tiny, elongated.
DETRIS_SHAPES = [(333, 500), (500, 333), (500, 375), (427, 640), (640, 480),
                 (300, 300), (7, 5), (40, 900), (900, 40)]


def test_postprocess_equals_detris_inference():
    """From the same 128 x 128 logits: sigmoid, bicubic align_corners=True to
    448, inverse cubic warp to (w, h), > 0.35. The masks are identical (the
    same float32 probabilities are thresholded); sigmoid(seg_logits) is
    DETRIS's probability clamped to [1e-6, 1 - 1e-6] (bicubic overshoots
    [0, 1]) up to the float32 logit/sigmoid round trip: atol 2e-7, a few
    float32 ulps below 1 (the largest error measured is 1 ulp, 6e-8)."""
    import cv2
    import numpy as np
    import torch.nn.functional as F

    from sera_mm.datasets.transforms import Letterbox

    model = MODELS.build(dict(model_cfg(with_fusion=False), test_cfg=DETRIS_TEST_CFG))
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(len(DETRIS_SHAPES), 1, 12, 12, generator=g) * 6
    logits = F.interpolate(coarse, (128, 128), mode='bilinear', align_corners=False)
    logits = logits + torch.randn(logits.shape, generator=g)
    letterbox = Letterbox(scale=DETRIS_SIZE, mode='affine')
    samples = []
    for h, w in DETRIS_SHAPES:
        lb = letterbox(dict(img=np.zeros((h, w, 3), np.uint8)))['letterbox']
        ds = SegDataSample()
        ds.set_metainfo(dict(ori_shape=(h, w), img_shape=(DETRIS_SIZE, DETRIS_SIZE),
                             letterbox=lb))
        samples.append(ds)
    results = model.postprocess_result(logits.clone(), samples,
                                       input_shape=(DETRIS_SIZE, DETRIS_SIZE))

    preds = torch.sigmoid(logits)
    preds = F.interpolate(preds, size=(DETRIS_SIZE, DETRIS_SIZE), mode='bicubic',
                          align_corners=True).squeeze(1)
    overshoot = False
    for pred, (h, w), ds in zip(preds, DETRIS_SHAPES, results):
        inverse = detris_letterbox_matrices(h, w, DETRIS_SIZE, DETRIS_SIZE)[1]
        prob = cv2.warpAffine(pred.numpy(), inverse, (w, h), flags=cv2.INTER_CUBIC,
                              borderValue=0.)
        mask = np.array(prob > 0.35)
        assert ds.pred_sem_seg.data.shape == (1, h, w)
        assert ds.pred_sem_seg.data.dtype == torch.long
        np.testing.assert_array_equal(ds.pred_sem_seg.data[0].numpy().astype(bool), mask)
        assert 0 < mask.mean() < 1 or (h, w) == (7, 5)
        got = ds.seg_logits.data[0].sigmoid().numpy()
        np.testing.assert_allclose(got, np.clip(prob, 1e-6, 1 - 1e-6), rtol=0, atol=2e-7)
        overshoot |= bool((prob < 0).any() or (prob > 1).any())
    assert overshoot  # the clamp was exercised


def test_test_cfg_upsample_defaults_and_errors():
    model = build()
    no_target_off = dict(no_target_threshold=0.5, min_mask_pixels=0)  # gRefCOCO's rules
    assert model.test_cfg == dict(threshold=0.35, **no_target_off,
                                  upsample=dict(mode='bilinear', align_corners=False))
    detris = MODELS.build(dict(model_cfg(with_fusion=False), test_cfg=DETRIS_TEST_CFG))
    assert detris.test_cfg == dict(DETRIS_TEST_CFG, **no_target_off)
    nearest = MODELS.build(dict(model_cfg(with_fusion=False),
                                test_cfg=dict(upsample=dict(mode='nearest'))))
    assert nearest.test_cfg['upsample'] == dict(mode='nearest')
    bicubic = MODELS.build(dict(model_cfg(with_fusion=False),
                                test_cfg=dict(upsample=dict(mode='bicubic'))))
    assert bicubic.test_cfg['upsample'] == dict(mode='bicubic', align_corners=False)
    for test_cfg, error, match in [
            (dict(upsample=dict(mode='bicubic', antialias=True)), KeyError,
             r"unknown test_cfg.upsample keys \['antialias'\]"),
            (dict(upsample=dict(mode='nearest', align_corners=True)), ValueError,
             'align_corners is only for modes'),
            (dict(upsample=dict(mode='cubic')), ValueError, 'upsample.mode'),
            (dict(upsample=dict(mode='bilinear', align_corners=1)), ValueError,
             'align_corners must be a bool'),
            (dict(threshold='0.5'), ValueError, 'threshold'),
            (dict(upsampling=dict(mode='bicubic')), KeyError, 'unknown test_cfg keys')]:
        with pytest.raises(error, match=match):
            MODELS.build(dict(model_cfg(with_fusion=False), test_cfg=test_cfg))


def test_upsample_mode_is_used_for_the_input_size_resize():
    """Probabilities are resized with test_cfg.upsample before the letterbox
    is undone; 'nearest' passes no align_corners."""
    import torch.nn.functional as F
    logits = torch.randn(1, 1, SIZE // 2, SIZE // 2)
    for upsample in (dict(mode='nearest'), dict(mode='bicubic', align_corners=True)):
        model = MODELS.build(dict(model_cfg(with_fusion=False),
                                  test_cfg=dict(upsample=upsample)))
        ds = SegDataSample()
        ds.set_metainfo(dict(ori_shape=(SIZE, SIZE), img_shape=(SIZE, SIZE)))
        out = model.postprocess_result(logits, [ds], input_shape=(SIZE, SIZE))[0]
        want = F.interpolate(logits.sigmoid(), (SIZE, SIZE), **upsample)[0]
        torch.testing.assert_close(out.seg_logits.data.sigmoid(),
                                   want.clamp(1e-6, 1 - 1e-6), rtol=0, atol=1e-6)
