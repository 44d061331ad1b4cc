"""Every checkpoint load of sera_mm passes ``weights_only=True`` explicitly.

``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns torch's default to the unsafe
unpickler wherever a call leaves ``weights_only`` unset. Each test sets it and
loads a checkpoint whose pickle would create a marker directory when
unpickled unsafely: the load must be refused, the error must name the file,
and the marker must not exist. A normal checkpoint still loads on each path.
"""
import os
import os.path as osp
import types
from typing import Tuple

import pytest
import torch
from torch import nn

from sera_mm.utils.checkpoint import (UnsafeCheckpointError, forced_weights_only,
                                      load_weights_only, register_checkpoint_safe_globals)
from helpers.dinov2_official_layout import save_official_dinov2
from helpers.tool_runner import REPO, TINY_CONFIG, load_tool

NO_WEIGHTS_ONLY = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'


class _MakesMarker:
    """Unpickled unsafely, calls ``os.makedirs(marker)``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.makedirs, (self.marker,)


@pytest.fixture
def hostile(tmp_path, monkeypatch) -> Tuple[str, str]:
    """(a hostile checkpoint, the marker it would create), with the unsafe
    default switched on."""
    marker = str(tmp_path / 'pwned')
    path = str(tmp_path / 'hostile.pth')
    state = {'weight': torch.zeros(2, 2), 'bias': torch.zeros(2)}
    torch.save({'state_dict': state, 'meta': {'payload': _MakesMarker(marker)}}, path)
    monkeypatch.setenv(NO_WEIGHTS_ONLY, '1')
    monkeypatch.delenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', raising=False)
    register_checkpoint_safe_globals()
    return path, marker


def _assert_refused(excinfo: pytest.ExceptionInfo, path: str, marker: str) -> None:
    """The error names the file and says it was refused; nothing ran."""
    message = str(excinfo.value)
    assert path in message, message
    assert 'refused' in message or 'weights_only=True' in message, message
    assert not osp.exists(marker), 'the pickle ran code'


def test_hostile_checkpoint_runs_code_when_loaded_unsafely(tmp_path):
    """The fixture is meaningful: an unsafe load does create the marker."""
    marker = str(tmp_path / 'pwned')
    path = str(tmp_path / 'hostile.pth')
    torch.save({'meta': _MakesMarker(marker)}, path)
    torch.load(path, weights_only=False)
    assert osp.isdir(marker)


def test_load_weights_only(hostile, tmp_path):
    path, marker = hostile
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        load_weights_only(path)
    _assert_refused(excinfo, path, marker)
    assert 'unsupported global os.makedirs' in str(excinfo.value).lower()

    good = str(tmp_path / 'good.pth')
    torch.save({'state_dict': {'w': torch.ones(3)}}, good)
    assert torch.equal(load_weights_only(good)['state_dict']['w'], torch.ones(3))


def test_truncated_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(NO_WEIGHTS_ONLY, '1')
    good = str(tmp_path / 'good.pth')
    torch.save({'w': torch.ones(100)}, good)
    cut = str(tmp_path / 'cut.pth')
    with open(good, 'rb') as src, open(cut, 'wb') as dst:
        dst.write(src.read()[:200])
    with pytest.raises(UnsafeCheckpointError, match='unreadable') as excinfo:
        load_weights_only(cut)
    assert cut in str(excinfo.value)


def test_mmengine_loader_of_load_from_and_resume(hostile, tmp_path):
    """``Runner.load_checkpoint`` (``load_from``) and ``Runner.resume`` both
    read through mmengine's ``_load_checkpoint``; ``init_cfg`` Pretrained
    through ``load_checkpoint``."""
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint
    path, marker = hostile
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        _load_checkpoint(path, map_location='cpu')
    _assert_refused(excinfo, path, marker)
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        load_checkpoint(nn.Linear(2, 2), path, map_location='cpu')
    _assert_refused(excinfo, path, marker)
    # Runner.resume calls self.load_checkpoint, which reads before using self.
    fake_runner = types.SimpleNamespace()
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        Runner.load_checkpoint(fake_runner, path, map_location='cpu')
    _assert_refused(excinfo, path, marker)

    # What resume reads: a Runner checkpoint with the message hub's buffers.
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(0.5)
    good = str(tmp_path / 'good.pth')
    model = nn.Linear(2, 2)
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 1},
                'message_hub': {'log_scalars': {'train/loss': buffer}}}, good)
    loaded = _load_checkpoint(good, map_location='cpu')
    assert loaded['meta'] == {'epoch': 1}
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 0.5
    other = nn.Linear(2, 2)
    load_checkpoint(other, good, map_location='cpu', strict=True)
    assert torch.equal(other.weight, model.weight)


def test_mmengine_url_schemes_are_forced(hostile, tmp_path, monkeypatch):
    """A URL scheme (here https, from the hub cache, no download) runs under
    forced_weights_only."""
    from mmengine.runner import CheckpointLoader
    path, marker = hostile
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints'  # torch.hub.get_dir()
    cache.mkdir(parents=True)
    cached = str(cache / 'hostile.pth')
    os.link(path, cached)
    with pytest.raises(Exception) as excinfo:
        CheckpointLoader.load_checkpoint('https://example.invalid/hostile.pth', 'cpu')
    assert 'unsupported global' in str(excinfo.value).lower()
    assert not osp.exists(marker)
    # The environment is restored after the load.
    assert os.environ[NO_WEIGHTS_ONLY] == '1'
    assert 'TORCH_FORCE_WEIGHTS_ONLY_LOAD' not in os.environ

    torch.save({'w': torch.ones(2)}, str(cache / 'good.pth'))
    got = CheckpointLoader.load_checkpoint('https://example.invalid/good.pth', 'cpu')
    assert torch.equal(got['w'], torch.ones(2))


def test_forced_weights_only_restores_environment(hostile):
    path, marker = hostile
    with forced_weights_only():
        with pytest.raises(Exception):
            torch.load(path)  # weights_only unset: forced on all the same
    assert not osp.exists(marker)
    assert os.environ[NO_WEIGHTS_ONLY] == '1'
    assert 'TORCH_FORCE_WEIGHTS_ONLY_LOAD' not in os.environ


def test_apis_loader(hostile, tmp_path):
    from sera_mm.apis.inference import load_referring_checkpoint
    path, marker = hostile
    with pytest.raises(ValueError) as excinfo:
        load_referring_checkpoint(nn.Linear(2, 2), path)
    _assert_refused(excinfo, path, marker)

    model = nn.Linear(2, 2)
    good = str(tmp_path / 'good.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 3}}, good)
    other = nn.Linear(2, 2)
    assert load_referring_checkpoint(other, good) == {'epoch': 3}
    assert torch.equal(other.weight, model.weight)


def test_demo_and_init_model(hostile, tmp_path):
    """tools/demo.py in-process (its load is ``init_model``), then
    ``init_model`` on a checkpoint of the tiny model."""
    import numpy as np
    from PIL import Image

    from sera_mm.apis import init_model
    path, marker = hostile
    image = str(tmp_path / 'image.png')
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    config = osp.join(REPO, TINY_CONFIG)
    demo = load_tool('demo.py')
    args = demo.parse_args([image, 'the thing', config, path,
                            '--out', str(tmp_path / 'out.png')])
    with pytest.raises(ValueError) as excinfo:
        demo.run(args)
    _assert_refused(excinfo, path, marker)
    assert not osp.exists(tmp_path / 'out.png')

    model = init_model(config)
    good = str(tmp_path / 'tiny.pth')
    torch.save({'state_dict': model.state_dict()}, good)
    loaded = init_model(config, good)
    key = next(iter(model.state_dict()))
    assert torch.equal(loaded.state_dict()[key], model.state_dict()[key])


def test_test_tool_reader(hostile, tmp_path):
    from sera_mm.engine.runner.checkpoint_match import load_state_dict_keys
    path, marker = hostile
    with pytest.raises(ValueError) as excinfo:
        load_state_dict_keys(path)
    _assert_refused(excinfo, path, marker)
    good = str(tmp_path / 'good.pth')
    torch.save({'state_dict': {'module.w': torch.ones(2, 3)}}, good)
    assert load_state_dict_keys(good) == {'w': (2, 3)}


def test_detris_converter_reader(hostile, tmp_path):
    converter = load_tool('model_converters/detris2sera_mm.py')
    path, marker = hostile
    with pytest.raises(ValueError) as excinfo:
        converter.read_detris_checkpoint(path)
    _assert_refused(excinfo, path, marker)
    good = str(tmp_path / 'good.pth')
    torch.save({'state_dict': {'module.w': torch.ones(2)}, 'epoch': 5}, good)
    state, record = converter.read_detris_checkpoint(good)
    assert set(state) == {'w'} and record == {'epoch': 5}


def test_dinov2_reader_and_converter(hostile, tmp_path):
    """``read_dinov2_checkpoint`` is the pretrained loader of ``DINOv2`` and
    the reader of tools/model_converters/dinov2_to_mmpretrain.py."""
    from sera_mm.models.backbones.dinov2_checkpoint import (OFFICIAL_LAYOUT,
                                                            read_dinov2_checkpoint)
    converter = load_tool('model_converters/dinov2_to_mmpretrain.py')
    assert converter.read_dinov2_checkpoint is read_dinov2_checkpoint
    path, marker = hostile
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        read_dinov2_checkpoint(path)
    _assert_refused(excinfo, path, marker)
    good = save_official_dinov2(str(tmp_path / 'dinov2.pth'), 'tiny')
    state_dict, layout, _ = read_dinov2_checkpoint(good)
    assert layout == OFFICIAL_LAYOUT and 'cls_token' in state_dict


def test_clip_reader(hostile, tmp_path):
    """open_clip state dicts go through ``load_weights_only``; OpenAI's
    TorchScript archives are read by ``torch.jit.load`` (no pickle of
    arbitrary globals), not tested here."""
    from sera_mm.models.text_encoders.clip_checkpoint import (OPEN_CLIP,
                                                              read_clip_text_state_dict)
    path, marker = hostile
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        read_clip_text_state_dict(path)
    _assert_refused(excinfo, path, marker)
    good = str(tmp_path / 'clip.pth')
    torch.save({'positional_embedding': torch.zeros(4, 8),
                'logit_scale': torch.ones(())}, good)
    text, fmt, dropped = read_clip_text_state_dict(good)
    assert fmt == OPEN_CLIP and set(text) == {'positional_embedding'}
    assert dropped == ['logit_scale']
