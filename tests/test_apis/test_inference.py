"""sera_mm.apis: init_model and inference_referring on a tiny random SERA."""
import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from sera_mm.apis import (CheckpointMismatchError, inference_referring, init_model,
                          load_image)
from sera_mm.registry import DATASETS


@pytest.fixture(scope='module')
def model(tiny_model_files):
    config, checkpoint, _ = tiny_model_files
    return init_model(config, checkpoint, device='cpu')


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize('shape', [(97, 131, 3), (131, 97, 3), (45, 77), (45, 77, 1),
                                   (33, 64, 4), (1, 5, 3)])
def test_mask_has_the_image_size(model, shape):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    result = inference_referring(model, img, 'the red circle')
    assert tuple(result.pred_sem_seg.shape) == shape[:2]
    assert tuple(result.seg_logits.shape) == shape[:2]
    assert set(result.pred_sem_seg.data.unique().tolist()) <= {0, 1}
    assert result.metainfo['text'] == 'the red circle'


def test_gray_and_rgba_read_like_the_training_loader(model, tmp_path):
    """A grayscale or opaque RGBA file gives the prediction of the 3-channel
    image that OpenCV's IMREAD_COLOR (the training loader) makes of it.
    (Transparency is flattened over white: tests/test_apis/test_photo_inputs.py.)"""
    gray = _image(41, 67)[..., 0]
    bgra = np.concatenate([_image(41, 67, seed=2), np.full((41, 67, 1), 255, np.uint8)], -1)
    cv2.imwrite(str(tmp_path / 'gray.png'), gray)
    cv2.imwrite(str(tmp_path / 'rgba.png'), bgra)
    for path, reference in ((tmp_path / 'gray.png', np.repeat(gray[..., None], 3, -1)),
                            (tmp_path / 'rgba.png', bgra[..., :3])):
        np.testing.assert_array_equal(load_image(str(path)), reference)
        got = inference_referring(model, str(path), 'the green square')
        want = inference_referring(model, np.ascontiguousarray(reference), 'the green square')
        torch.testing.assert_close(got.seg_logits.data, want.seg_logits.data)
        assert got.metainfo['img_path'] == str(path)


def test_equals_the_test_dataloader_path(model, tiny_model_files):
    """The helper's pipeline (image read by load_image, no annotation) gives
    the very prediction of the config's test dataset sample."""
    cfg = Config.fromfile(tiny_model_files[0])
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    for idx in (0, len(dataset) - 1):
        sample = dataset[idx]
        with torch.no_grad():
            want = model.test_step(pseudo_collate([sample]))[0]
        info = dataset.get_data_info(idx)
        got = inference_referring(model, info['img_path'], info['text'])
        assert tuple(got.pred_sem_seg.shape) == (info['height'], info['width'])
        torch.testing.assert_close(got.seg_logits.data, want.seg_logits.data)
        assert torch.equal(got.pred_sem_seg.data, want.pred_sem_seg.data)


def test_a_list_is_one_batch_with_per_image_sizes(model):
    images = [_image(50, 90, 3), _image(120, 31, 4)]
    sentences = ['the blue triangle', 'the leftmost shape']
    batch = inference_referring(model, images, sentences)
    for img, sent, res in zip(images, sentences, batch):
        single = inference_referring(model, img, sent)
        assert tuple(res.pred_sem_seg.shape) == img.shape[:2]
        # Batch and single runs differ by float rounding (other GEMM blocking).
        # Compared as probabilities, what the post-processing resamples:
        # ``seg_logits`` is their logit, whose slope 1 / (p (1 - p)) turns a
        # rounding step of a saturated probability into ~1e-3 of logit.
        torch.testing.assert_close(res.seg_logits.data.sigmoid(),
                                   single.seg_logits.data.sigmoid(), atol=1e-5, rtol=0)
        assert torch.equal(res.pred_sem_seg.data, single.pred_sem_seg.data)


def test_input_errors_name_the_input(model, tmp_path):
    with pytest.raises(FileNotFoundError, match='image not found: .*nowhere.jpg'):
        inference_referring(model, str(tmp_path / 'nowhere.jpg'), 'the red circle')
    (tmp_path / 'bad.jpg').write_bytes(b'not an image')
    with pytest.raises(ValueError, match='cannot decode image: .*bad.jpg'):
        inference_referring(model, str(tmp_path / 'bad.jpg'), 'the red circle')
    with pytest.raises(ValueError, match='empty sentence'):
        inference_referring(model, _image(20, 20), '   ')
    with pytest.raises(ValueError, match='2 images but 1 sentences'):
        inference_referring(model, [_image(20, 20)] * 2, ['a'])


def test_checkpoint_errors_name_the_checkpoint(tiny_model_files, tmp_path):
    config, checkpoint, _ = tiny_model_files
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']

    wrong_shape = dict(state)
    key = next(k for k, v in state.items() if v.dim() == 2)
    wrong_shape[key] = torch.zeros(3, 3)
    missing = {k: v for k, v in state.items() if k != key}
    for name, sd, pattern in (('shape.pth', wrong_shape, '1 shape mismatches'),
                              ('missing.pth', missing, '1 missing keys')):
        torch.save(dict(state_dict=sd), tmp_path / name)
        with pytest.raises(CheckpointMismatchError, match=f'{name}.*{pattern}.*{key}'):
            init_model(config, str(tmp_path / name))
    (tmp_path / 'garbage.pth').write_bytes(b'\x00garbage')
    with pytest.raises(ValueError, match='cannot read checkpoint .*garbage.pth'):
        init_model(config, str(tmp_path / 'garbage.pth'))
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        init_model(config, str(tmp_path / 'absent.pth'))
    with pytest.raises(FileNotFoundError, match='config not found'):
        init_model(str(tmp_path / 'absent.py'), checkpoint)


def test_ddp_prefixed_checkpoint_loads_the_same_weights(tiny_model_files, tmp_path):
    config, checkpoint, _ = tiny_model_files
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
    torch.save(dict(state_dict={f'module.{k}': v for k, v in state.items()}),
               tmp_path / 'ddp.pth')
    loaded = init_model(config, str(tmp_path / 'ddp.pth')).state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_runner_checkpoint_loads_in_a_fresh_process(tiny_model_files, tmp_path, monkeypatch):
    """A Runner checkpoint pickles HistoryBuffer statistic methods; a process
    with no message hub yet (the demo) has not registered them, and the
    weights-only allow-list must still accept them."""
    from mmengine.logging import HistoryBuffer, MessageHub
    config, checkpoint, _ = tiny_model_files
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
    hub = MessageHub.get_instance('test_runner_checkpoint')
    hub.update_scalar('train/loss', 0.5)
    path = str(tmp_path / 'runner.pth')
    torch.save(dict(state_dict=state, meta=dict(epoch=1), message_hub=hub.state_dict()), path)
    monkeypatch.setattr(HistoryBuffer, '_statistics_methods', {})  # as in a new process
    loaded = init_model(config, path).state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
