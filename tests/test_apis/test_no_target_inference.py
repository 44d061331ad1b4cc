"""inference_referring with a presence head: the "no target" score comes back
with the mask, through every path of the API (batch, shrunk photo, threshold)."""
import numpy as np
import pytest
import torch

from sera_mm.apis import inference_referring, init_model

# the widths of the tiny config's decoder and sentence feature (configs/gres/)
PRESENCE = {'model.presence_head': dict(type='PresenceHead', in_channels=128,
                                        text_channels=128, channels=16)}


@pytest.fixture(scope='module')
def presence_model(tiny_model_files):
    torch.manual_seed(0)
    return init_model(tiny_model_files[0], cfg_options=PRESENCE)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _head_probability(model, image, sentence):
    """The presence head's own probability, from the model's test_step."""
    from mmengine.dataset import pseudo_collate
    data = model.test_pipeline(dict(img=image, text=sentence))
    with torch.no_grad():
        return float(model.test_step(pseudo_collate([data]))[0].no_target_score)


def test_score_comes_back_with_the_mask(presence_model):
    image = _image(97, 131)
    result = inference_referring(presence_model, image, 'the purple star')
    score = result.no_target_score
    assert isinstance(score, torch.Tensor) and score.ndim == 0 and score.is_floating_point()
    assert 0.0 < float(score) < 1.0
    assert float(score) == pytest.approx(_head_probability(presence_model, image,
                                                           'the purple star'))


def test_no_score_without_a_head(tiny_model_files):
    model = init_model(*tiny_model_files[:2])
    result = inference_referring(model, _image(40, 50), 'the red circle')
    assert 'no_target_score' not in result


@pytest.mark.parametrize('kwargs', [dict(), dict(threshold=0.01), dict(threshold=0.0),
                                    dict(max_side=64)],
                         ids=['plain', 'threshold', 'threshold-0', 'shrunk'])
def test_no_target_is_an_empty_mask_with_its_score(presence_model, kwargs):
    """Every sample judged "no target" keeps its score and an empty mask,
    also when the API re-thresholds or resizes a shrunk photo back."""
    images = [_image(97, 131, 1), _image(150, 90, 2)]
    sentences = ['the purple star', 'the red circle']
    test_cfg = presence_model.test_cfg
    old = test_cfg['no_target_threshold']
    try:
        test_cfg['no_target_threshold'] = -1.0  # every probability exceeds it
        results = inference_referring(presence_model, images, sentences, **kwargs)
        test_cfg['no_target_threshold'] = 1.0  # none does
        found = inference_referring(presence_model, images, sentences, **kwargs)
    finally:
        test_cfg['no_target_threshold'] = old
    for image, result, other in zip(images, results, found):
        assert tuple(result.pred_sem_seg.shape) == image.shape[:2]
        assert not result.pred_sem_seg.data.any()
        assert float(result.no_target_score) == pytest.approx(float(other.no_target_score))
    if 'max_side' in kwargs:
        assert results[0].metainfo['model_shape'] != tuple(images[0].shape[:2])
    # the same sentences with the decision off: a mask at threshold 0.01
    if 'threshold' in kwargs:
        assert all(r.pred_sem_seg.data.any() for r in found)


def test_a_new_threshold_keeps_the_empty_mask_rule(presence_model):
    """``min_mask_pixels`` holds for the API's own threshold too."""
    test_cfg = presence_model.test_cfg
    old = dict(test_cfg)
    try:
        test_cfg.update(no_target_threshold=1.0, min_mask_pixels=0)
        found = inference_referring(presence_model, _image(97, 131, 1), 'the red circle',
                                    threshold=0.0)
        assert found.pred_sem_seg.data.all()
        test_cfg['min_mask_pixels'] = 97 * 131 + 1  # more than the image has
        empty = inference_referring(presence_model, _image(97, 131, 1), 'the red circle',
                                    threshold=0.0)
        assert not empty.pred_sem_seg.data.any()
    finally:
        test_cfg.clear()
        test_cfg.update(old)
