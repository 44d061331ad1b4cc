"""tools/webui_screenshot.py: the picture of the page after one request and
the words the page said, which go beside it in the README."""
import pytest
from PIL import Image

from helpers.tool_runner import load_tool


@pytest.fixture(scope='module')
def screenshot():
    return load_tool('webui_screenshot.py')


@pytest.mark.integration
def test_screenshot_and_what_the_page_said(screenshot, tiny_model_files, tmp_path, capsys):
    config, checkpoint, data_root = tiny_model_files
    sentences = load_tool('webui.py').find_examples(data_root)[0][1].splitlines()
    out = str(tmp_path / 'webui.png')
    assert screenshot.main(['--config', config, '--checkpoint', checkpoint, '--examples',
                            data_root, '--out', out, '--width', '600']) == 0
    assert Image.open(out).width == 600
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f'{out}: 600 x ') and printed[0].endswith('the page says:')
    said = [line.strip() for line in printed[1:]]
    # one caption per sentence (its share of the photo, or "not in the picture");
    # the browser shows two spaces as one
    for sentence, caption in zip(sentences, said):
        assert caption.startswith((f'{sentence} (', f'"{sentence}": not in the picture'))
    assert said[2].startswith('2 sentence(s) on a ')
    assert said[-1].startswith('Routing changed by ') and 'between the 2 sentences' in said[-1]


def test_a_missing_checkpoint_names_make_demo(screenshot, tiny_model_files, tmp_path):
    missing = str(tmp_path / 'epoch_6.pth')
    with pytest.raises(SystemExit, match=f'checkpoint not found: {missing} '
                       r'\(make demo trains it\)'):
        screenshot.main(['--config', tiny_model_files[0], '--checkpoint', missing])
