"""The "no target" decision of gRefCOCO (GRES): the optional presence head
and the empty-mask rule of ``test_cfg.min_mask_pixels``."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from mmseg.structures import SegDataSample

from helpers.small_models import WIDTH, make_batch, small_model_cfg
from sera_mm.models.decode_heads import PresenceHead
from sera_mm.registry import MODELS

DETRIS_TINY = 'configs/synthetic/detris-tiny_synthetic.py'
SERA_TINY = 'configs/synthetic/sera-tiny_synthetic.py'
HEAD = dict(type='PresenceHead', in_channels=WIDTH, text_channels=WIDTH, channels=16)
_CFG = small_model_cfg(DETRIS_TINY)


def _build(path=DETRIS_TINY, head=None, seed=0, **test_cfg):
    cfg = small_model_cfg(path)
    if head is not None:
        cfg.presence_head = head
    cfg.test_cfg = dict(cfg.test_cfg, **test_cfg)
    torch.manual_seed(seed)
    return MODELS.build(cfg)


def _set_presence_bias(model, value: float) -> None:
    """Makes the head's logit ``value`` for every input."""
    last = model.presence_head.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(value)


def _predict(model):
    inputs, samples = make_batch(_CFG, 3)
    with torch.no_grad():
        return model.eval().predict(inputs, samples)


def test_without_the_head_the_model_is_unchanged_and_scores_nothing():
    plain, explicit = _build(), _build(head=None)
    assert plain.presence_head is None
    assert not any(k.startswith('presence_head') for k in plain.state_dict())
    assert plain.test_cfg['no_target_threshold'] == 0.5 and plain.test_cfg['min_mask_pixels'] == 0
    for a, b in zip(_predict(plain), _predict(explicit)):
        assert 'no_target_score' not in a
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)
    inputs, samples = make_batch(_CFG, 2)
    assert set(plain.train()(inputs, samples, mode='loss')) == {'loss_bce', 'loss_dice'}


def test_the_head_adds_only_its_own_weights_and_leaves_the_masks():
    """The same seed gives the same other weights; a head that never says
    "no target" leaves the logits and masks bit for bit."""
    plain, gres = _build(), _build(head=HEAD)
    state, gres_state = plain.state_dict(), gres.state_dict()
    assert {k for k in gres_state if k not in state} == \
        {k for k in gres_state if k.startswith('presence_head.')} != set()
    assert all(torch.equal(v, gres_state[k]) for k, v in state.items())
    _set_presence_bias(gres, -20.)
    for a, b in zip(_predict(plain), _predict(gres)):
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
        assert b.no_target_score.dim() == 0 and b.no_target_score.dtype == torch.float32
        assert float(b.no_target_score) < 1e-6


def test_presence_head_is_an_mlp_on_pooled_features_and_sentence():
    head = PresenceHead(in_channels=8, text_channels=6, channels=4)
    x, sentence = torch.randn(3, 8, 5, 7), torch.randn(3, 6)
    text = type('T', (), dict(sentence=sentence))()
    want = head.mlp(torch.cat([x.mean((2, 3)), x.amax((2, 3)), sentence], 1))[:, 0]
    torch.testing.assert_close(head(x, text), want)
    x2 = x.clone()
    x2[1, :, 2, 3] += 5.  # one strong place changes its sample's logit only
    out = head(x2, text)
    assert out[1] != want[1] and torch.equal(out[[0, 2]], want[[0, 2]])


@pytest.mark.parametrize('path', [DETRIS_TINY, SERA_TINY])
def test_training_step_learns_presence_from_the_no_target_metainfo(path):
    model = _build(path, head=HEAD).train()
    inputs, samples = make_batch(small_model_cfg(path), 4)
    for i, ds in enumerate(samples):
        if i % 2:  # a no-target sample: its mask is empty, as the data set packs it
            ds.set_metainfo(dict(no_target=True))
            ds.gt_sem_seg.data.zero_()
    # samples 0 and 2 have no `no_target` key: False
    torch.manual_seed(1)
    losses = model(inputs, samples, mode='loss')
    presence = losses['loss_presence']
    assert presence.dim() == 0 and torch.isfinite(presence)
    flipped = copy.deepcopy(samples)
    for ds in flipped:
        ds.set_metainfo(dict(no_target=not ds.metainfo.get('no_target', False)))
    torch.manual_seed(1)
    assert not torch.allclose(model(inputs, flipped, mode='loss')['loss_presence'], presence)
    # the loss is BCE on the head's logits against [0, 1, 0, 1]
    with torch.no_grad():
        text = model.encode_text(samples)
        torch.manual_seed(1)
        x, _ = model.extract_feat(inputs, text)
        logits = model.presence_head(x, text)
    torch.testing.assert_close(presence.detach(), F.binary_cross_entropy_with_logits(
        logits, torch.tensor([0., 1., 0., 1.])), rtol=1e-5, atol=1e-6)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = model.presence_head.mlp[1].weight.detach().clone()
    log = model.train_step(dict(inputs=inputs, data_samples=samples), wrapper)
    assert 'loss_presence' in log
    assert not torch.equal(model.presence_head.mlp[1].weight, before)


def test_loss_weight_scales_the_presence_loss():
    inputs, samples = make_batch(_CFG, 2)
    samples[0].set_metainfo(dict(no_target=True))
    values = []
    for weight in (1., 0.25):
        model = _build(head=dict(HEAD, loss_weight=weight)).train()
        torch.manual_seed(3)
        values.append(model(inputs, samples, mode='loss')['loss_presence'])
    torch.testing.assert_close(values[1], 0.25 * values[0])


@pytest.mark.parametrize('threshold, empty', [(0.5, True), (0.7, True), (0.8, False)])
def test_predict_empties_the_mask_when_the_probability_passes_the_threshold(threshold, empty):
    p = 0.75
    plain = _build(threshold=0.)
    gres = _build(head=HEAD, threshold=0., no_target_threshold=threshold)
    _set_presence_bias(gres, float(torch.logit(torch.tensor(p))))
    for a, b in zip(_predict(plain), _predict(gres)):
        assert a.pred_sem_seg.data.any()  # threshold 0: every pixel is foreground
        torch.testing.assert_close(b.no_target_score, torch.tensor(p))
        if empty:
            assert not b.pred_sem_seg.data.any()
            assert b.pred_sem_seg.data.shape == a.pred_sem_seg.data.shape
            # the probabilities say the same: a later threshold keeps it empty
            torch.testing.assert_close(b.seg_logits.data.sigmoid(),
                                       torch.full_like(a.seg_logits.data, 1e-6))
        else:
            assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
            assert torch.equal(a.seg_logits.data, b.seg_logits.data)


def _logits_with_blob(pixels: int) -> torch.Tensor:
    """1 x 1 x 16 x 16 logits, positive on ``pixels`` pixels of row 3."""
    logits = torch.full((1, 1, 16, 16), -5.)
    logits[0, 0, 3, :pixels] = 5.
    return logits


@pytest.mark.parametrize('min_pixels, pixels, empty', [
    (0, 1, False), (5, 4, True), (5, 5, False), (5, 12, False)])
def test_min_mask_pixels_empties_small_masks_at_the_original_size(min_pixels, pixels, empty):
    model = _build(min_mask_pixels=min_pixels)
    ds = SegDataSample(metainfo=dict(ori_shape=(16, 16), img_shape=(16, 16), text='a'))
    out = model.postprocess_result(_logits_with_blob(pixels), [ds], input_shape=(16, 16))[0]
    assert int(out.pred_sem_seg.data.sum()) == (0 if empty else pixels)
    assert 'no_target_score' not in out  # the rule has no score


def test_min_mask_pixels_counts_pixels_at_the_original_size_not_the_heads():
    """4 head pixels become 16 at twice the size: kept with min 10."""
    model = _build(min_mask_pixels=10, upsample=dict(mode='nearest'))
    ds = SegDataSample(metainfo=dict(ori_shape=(32, 32), img_shape=(32, 32), text='a'))
    out = model.postprocess_result(_logits_with_blob(4), [ds], input_shape=(32, 32))[0]
    assert int(out.pred_sem_seg.data.sum()) == 16


@pytest.mark.parametrize('test_cfg, match', [
    (dict(min_mask_pixels=-1), 'min_mask_pixels'),
    (dict(min_mask_pixels=2.5), 'min_mask_pixels'),
    (dict(min_mask_pixels=True), 'min_mask_pixels'),
    (dict(no_target_threshold='0.5'), 'no_target_threshold')])
def test_bad_no_target_settings_are_named(test_cfg, match):
    with pytest.raises(ValueError, match=match):
        _build(**test_cfg)


def test_a_converted_detris_checkpoint_warm_starts_a_model_with_the_head():
    """Every converted DETRIS weight loads; only the head's are missing, and
    the mask logits are still DETRIS's."""
    from helpers import detris_reference as R
    from test_tools.test_detris_converter import TOL, _compare, _tiny_model_cfg, converter
    arch = R.tiny()
    reference = R.make_detris_state_dict(arch, seed=1)
    converted, _ = converter.convert_detris(reference, arch.word_len)
    model = MODELS.build(dict(_tiny_model_cfg(arch), presence_head=dict(
        type='PresenceHead', in_channels=arch.neck_width, text_channels=arch.embed_dim)))
    result = model.load_state_dict(converted, strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith('presence_head.')
                                       for k in result.missing_keys)
    assert set(result.missing_keys) == {k for k in model.state_dict()
                                        if k.startswith('presence_head.')}
    assert _compare(model, reference, arch, 112) <= TOL
