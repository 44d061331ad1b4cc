"""tools/demo.py on the tiny random SERA: sizes, formats and one-line errors."""
import importlib.util
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from helpers.paths import REPO

TOOL = osp.join(REPO, 'tools', 'demo.py')


@pytest.fixture(scope='module')
def demo():
    spec = importlib.util.spec_from_file_location('sera_demo_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Odd-sized colour JPEG, grayscale PNG, RGBA PNG: {name: (path, (h, w))}."""
    root = tmp_path_factory.mktemp('demo_images')
    rng = np.random.default_rng(0)
    made = {}
    for name, shape in (('odd.jpg', (97, 131, 3)), ('gray.png', (45, 77)),
                        ('rgba.png', (33, 64, 4)), ('tall.png', (151, 23, 3))):
        path = str(root / name)
        cv2.imwrite(path, rng.integers(0, 256, shape, dtype=np.uint8))
        made[name] = (path, shape[:2])
    return made


def test_single_overlay_has_the_image_size(demo, tiny_model_files, images, tmp_path, capsys):
    config, checkpoint, _ = tiny_model_files
    path, (h, w) = images['odd.jpg']
    out = str(tmp_path / 'overlay.png')
    assert demo.main([path, 'the red circle', config, checkpoint, '--out', out]) == 0
    drawn = cv2.imread(out, cv2.IMREAD_UNCHANGED)
    assert drawn.shape == (h, w, 3)
    assert out in capsys.readouterr().out


def test_batch_writes_one_overlay_per_line_and_a_sheet(demo, tiny_model_files, images,
                                                       tmp_path):
    config, checkpoint, _ = tiny_model_files
    names = ['odd.jpg', 'gray.png', 'rgba.png', 'tall.png']
    batch = tmp_path / 'pairs.tsv'
    batch.write_text('# image<TAB>sentence\n\n' + ''.join(
        f'{images[n][0]}\tthe shape number {i}\n' for i, n in enumerate(names)))
    out_dir = tmp_path / 'out'
    assert demo.main(['--batch', str(batch), config, checkpoint, '--out', str(out_dir),
                      '--cell', '64']) == 0
    for i, name in enumerate(names):
        stem = osp.splitext(name)[0]
        drawn = cv2.imread(str(out_dir / f'{i:03d}_{stem}.png'), cv2.IMREAD_UNCHANGED)
        assert drawn.shape == images[name][1] + (3,), name
    sheet = cv2.imread(str(out_dir / demo.CONTACT_SHEET))
    # 4 overlays -> 2 x 2 cells of 64 px with 4 px gaps
    assert sheet.shape == (2 * 68 + 4, 2 * 68 + 4, 3)


def _error_of(demo, argv, capsys) -> str:
    assert demo.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and '\n' not in err, err
    return err


def test_errors_are_one_line_naming_the_input(demo, tiny_model_files, images, tmp_path,
                                              capsys):
    config, checkpoint, _ = tiny_model_files
    image = images['odd.jpg'][0]
    missing = str(tmp_path / 'missing.jpg')
    assert missing in _error_of(demo, [missing, 'the red circle', config, checkpoint], capsys)
    err = _error_of(demo, [image, '  ', config, checkpoint], capsys)
    assert 'empty sentence' in err and image in err
    assert 'nowhere.py' in _error_of(
        demo, [image, 'x', str(tmp_path / 'nowhere.py'), checkpoint], capsys)

    # a checkpoint of another model: one tensor of another shape
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
    key = next(k for k, v in state.items() if v.dim() == 2)
    state[key] = torch.zeros(2, 2)
    other = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=state), other)
    err = _error_of(demo, [image, 'x', config, other], capsys)
    assert other in err and key in err and 'does not fit' in err

    batch = tmp_path / 'bad.tsv'
    batch.write_text(f'{image}\tthe red circle\n{image} the blue square\n')
    err = _error_of(demo, ['--batch', str(batch), config, checkpoint], capsys)
    assert f'{batch}:2' in err and 'no tab' in err
    batch.write_text(f'{image}\tthe red circle\n{missing}\tthe blue square\n')
    err = _error_of(demo, ['--batch', str(batch), config, checkpoint], capsys)
    assert f'{batch}:2' in err and missing in err
    batch.write_text(f'{image}\t \n')
    err = _error_of(demo, ['--batch', str(batch), config, checkpoint], capsys)
    assert f'{batch}:1' in err and 'empty sentence' in err


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the demo gets as far as building the model."""
    import sera_mm.apis

    def fail(*args, **kwargs):
        raise AssertionError('the model was built before the input check')
    monkeypatch.setattr(sera_mm.apis, 'init_model', fail)


@pytest.mark.parametrize('out, words', [
    ('overlay', ['has no extension', '.png', '.jpg']),
    ('overlay.pdf', ["extension '.pdf'", '.png', '.webp']),
    ('folder_out', ['is a folder', '.png']),
])
def test_out_without_an_image_extension_is_refused_before_the_model(
        demo, tiny_model_files, images, tmp_path, capsys, no_model, out, words):
    config, checkpoint, _ = tiny_model_files
    (tmp_path / 'folder_out').mkdir()
    target = str(tmp_path / out)
    err = _error_of(demo, [images['odd.jpg'][0], 'the red circle', config, checkpoint,
                           '--out', target], capsys)
    assert f'--out {target}' in err, err
    for word in words:
        assert word in err, err
    assert not osp.exists(target) or osp.isdir(target)


def test_batch_out_must_be_a_folder(demo, tiny_model_files, images, tmp_path, capsys,
                                    no_model):
    config, checkpoint, _ = tiny_model_files
    batch = tmp_path / 'pairs.tsv'
    batch.write_text(f"{images['odd.jpg'][0]}\tthe red circle\n")
    existing = tmp_path / 'taken'
    existing.write_text('x')
    err = _error_of(demo, ['--batch', str(batch), config, checkpoint, '--out', str(existing)],
                    capsys)
    assert f'--out {existing} is an existing file' in err and 'folder' in err
    err = _error_of(demo, ['--batch', str(batch), config, checkpoint, '--out',
                           str(tmp_path / 'sheet.png')], capsys)
    assert 'ends like an image' in err and 'folder' in err


@pytest.mark.parametrize('encoding', ['utf-8-sig', 'utf-16'])
def test_batch_file_with_a_byte_order_mark(demo, images, tmp_path, encoding):
    """Notepad's 'UTF-8 with BOM' and 'Unicode' (UTF-16) files."""
    path = tmp_path / 'pairs.tsv'
    image = images['odd.jpg'][0]
    path.write_text(f'{image}\tle cercle rouge à gauche\r\n{image}\t左边的圆\r\n',
                    encoding=encoding)
    pairs = demo.read_batch_file(str(path))
    assert [(p[0], p[1]) for p in pairs] == [(image, 'le cercle rouge à gauche'),
                                             (image, '左边的圆')]
    assert pairs[1][2] == f'{path}:2'


def test_undecodable_batch_file_names_file_line_and_byte(demo, images, tmp_path, capsys,
                                                         tiny_model_files, no_model):
    config, checkpoint, _ = tiny_model_files
    image = images['odd.jpg'][0]
    path = tmp_path / 'latin1.tsv'
    path.write_bytes(f'{image}\tthe red circle\n'.encode() +
                     f'{image}\tle carré bleu\n'.encode('latin-1'))
    err = _error_of(demo, ['--batch', str(path), config, checkpoint], capsys)
    assert f'{path}:2: not UTF-8 text (byte 0xe9' in err and 'save the batch file as UTF-8' \
        in err, err
    path.write_bytes(f'{image}\tthe circle\n'.encode('utf-16-le'))  # UTF-16 without a BOM
    err = _error_of(demo, ['--batch', str(path), config, checkpoint], capsys)
    assert f'{path}:1: holds NUL bytes' in err, err


# -- "no target" -----------------------------------------------------------------
@pytest.fixture(scope='module')
def presence_files(tiny_model_files, tmp_path_factory):
    """(config, checkpoint) of the tiny SERA with a presence head, random."""
    from sera_mm.apis import init_model
    root = tmp_path_factory.mktemp('tiny_presence')
    config = str(root / 'tiny_presence.py')
    with open(config, 'w') as f:
        f.write(f'_base_ = {tiny_model_files[0]!r}\n'
                "model = dict(presence_head=dict(type='PresenceHead', in_channels=128, "
                'text_channels=128, channels=16))\n')
    torch.manual_seed(0)
    checkpoint = str(root / 'tiny_presence.pth')
    torch.save(dict(state_dict=init_model(config).state_dict()), checkpoint)
    return config, checkpoint


@pytest.fixture
def captions(monkeypatch):
    """The captions the visualiser draws, in order."""
    from sera_mm.visualization import ReferringVisualizer
    drawn, original = [], ReferringVisualizer.draw_caption

    def record(self, text, *args, **kwargs):
        drawn.append(text)
        return original(self, text, *args, **kwargs)
    monkeypatch.setattr(ReferringVisualizer, 'draw_caption', record)
    return drawn


def _score(config, checkpoint, image, sentence):
    from sera_mm.apis import inference_referring, init_model
    return float(inference_referring(init_model(config, checkpoint), image,
                                     sentence).no_target_score)


def test_no_target_is_written_in_the_caption_and_the_summary(
        demo, presence_files, images, tmp_path, capsys, captions):
    config, checkpoint = presence_files
    image = images['odd.jpg'][0]
    p = _score(config, checkpoint, image, 'the purple star')
    out = str(tmp_path / 'none.png')
    # every probability exceeds -1: the model says "no target"
    assert demo.main([image, 'the purple star', config, checkpoint, '--out', out,
                      '--cfg-options', 'model.test_cfg.no_target_threshold=-1']) == 0
    expected = f'"the purple star": not found (p = {p:.2f})'
    assert captions == [expected]
    assert capsys.readouterr().out.strip() == f'{out}: 131 x 97, {expected}'

    # no probability exceeds 1: a mask, the bare sentence, the mask's share and p
    captions.clear()
    assert demo.main([image, 'the red circle', config, checkpoint, '--out', out,
                      '--cfg-options', 'model.test_cfg.no_target_threshold=1.0',
                      'model.test_cfg.threshold=0.01']) == 0
    assert captions == ['the red circle']
    printed = capsys.readouterr().out
    assert '% of the image, no-target p = ' in printed and 'not found' not in printed


def test_an_empty_mask_without_a_head_is_not_found(demo, tiny_model_files, images, tmp_path,
                                                   capsys, captions):
    config, checkpoint, _ = tiny_model_files
    names = ['odd.jpg', 'gray.png']
    batch = tmp_path / 'pairs.tsv'
    batch.write_text(''.join(f'{images[n][0]}\tthe shape {i}\n' for i, n in enumerate(names)))
    out_dir = tmp_path / 'out'
    # no probability exceeds 1: every mask is empty
    assert demo.main(['--batch', str(batch), config, checkpoint, '--out', str(out_dir),
                      '--cfg-options', 'model.test_cfg.threshold=1.0']) == 0
    assert captions == ['"the shape 0": not found', '"the shape 1": not found']
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f'{out_dir / "000_odd.png"}: "the shape 0": not found'
    assert lines[1] == f'{out_dir / "001_gray.png"}: "the shape 1": not found'

    # --no-caption: nothing on the picture, the summary still says it
    captions.clear()
    out = str(tmp_path / 'bare.png')
    assert demo.main([images['odd.jpg'][0], 'the red circle', config, checkpoint, '--out', out,
                      '--no-caption', '--cfg-options', 'model.test_cfg.threshold=1.0']) == 0
    assert captions == []
    assert capsys.readouterr().out.strip().endswith('"the red circle": not found')
