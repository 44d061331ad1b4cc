"""Captions in any script: the font chain covers the sentence's characters
with installed fonts, or says which characters no font has (drawn as '?'),
never empty boxes."""
import warnings

import numpy as np
import pytest

from sera_mm.visualization import MissingGlyphWarning, ReferringVisualizer, caption_font
from sera_mm.visualization import fonts

CHINESE = '左边的红色圆圈'
EMOJI = '\U0001F600'   # 😀 (DejaVu Sans has it; colour-only emoji fonts are skipped)
#: Characters that practically no font has (private use, unassigned planes)
NO_FONT = ['\U000F0001', '\U0010FFFD', '\U000E0F00']


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """Every test sees each character's warning (once per process else)."""
    monkeypatch.setattr(fonts, '_warned', set())


def _covering(char):
    """A font family (not the default) matplotlib knows that has ``char``."""
    default, _ = fonts._default_family()
    for name, path in fonts._candidates():
        charmap = fonts._charmap(path)
        if name != default and charmap and ord(char) in charmap:
            return name
    return None


def _uncovered():
    """A character no font of this machine has."""
    default, path = fonts._default_family()
    for char in NO_FONT:
        if ord(char) not in (fonts._charmap(path) or ()) and _covering(char) is None:
            return char
    pytest.skip('every probe character has a font on this machine')


def test_latin_needs_the_default_font_only():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        font = caption_font('the man on the left, 2nd from $5 café')
    assert font.families == (fonts._default_family()[0], )
    assert font.text == 'the man on the left, 2nd from $5 café' and font.missing == ()


def test_a_character_of_another_font_brings_that_font():
    """'⌵' (U+2335): DejaVu Sans Mono has it, DejaVu Sans does not (both ship
    with matplotlib, so this runs everywhere)."""
    char = '\u2335'
    owner = _covering(char)
    if owner is None or ord(char) in fonts._charmap(fonts._default_family()[1]):
        pytest.skip('the default font has U+2335 or no font does')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        font = caption_font(f'the {char} sign')
    assert font.families[0] == fonts._default_family()[0] and len(font.families) == 2
    assert font.text == f'the {char} sign' and font.missing == ()


def test_chinese_gets_a_font_or_a_warning_naming_the_characters():
    owner = _covering('中')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        font = caption_font(f'{CHINESE} {EMOJI}')
    found = [w for w in caught if issubclass(w.category, MissingGlyphWarning)]
    if owner is not None:  # e.g. fonts-noto-cjk installed
        assert not found and font.missing == () and font.text == f'{CHINESE} {EMOJI}'
        assert len(font.families) >= 2
    else:
        (warning, ) = found
        message = str(warning.message)
        for char in CHINESE:
            assert f"'{char}' (U+{ord(char):04X})" in message, message
        assert 'fonts-noto-cjk' in message
        assert font.text.startswith('?' * len(CHINESE)) and set(font.missing) == set(CHINESE)


def test_a_character_no_font_has_is_a_question_mark_and_one_warning():
    char = _uncovered()
    with pytest.warns(MissingGlyphWarning, match=f'U\\+{ord(char):04X}'):
        font = caption_font(f'the {char} thing')
    assert font.text == 'the ? thing' and font.missing == (char, )
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # said once per character and process
        caption_font(f'another {char}')


def test_the_visualizer_draws_the_replacement_not_a_box():
    char = _uncovered()
    visualizer = ReferringVisualizer(name='test_caption_fonts')
    img = np.full((120, 320, 3), 90, np.uint8)
    with pytest.warns(MissingGlyphWarning):
        drawn = visualizer.draw_referring(img, None, f'the {char} thing')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # nor does matplotlib warn of a missing glyph
        question = visualizer.draw_referring(img, None, 'the ? thing')
    np.testing.assert_array_equal(drawn, question)


def test_dollar_signs_are_text_not_math():
    """Two '$' would make matplotlib typeset the words between them as math
    (italics, spaces dropped): the caption band would come out narrower than
    for the same text with 'S' in place of '$'."""
    visualizer = ReferringVisualizer(name='test_caption_dollars')
    img = np.full((80, 600, 3), 90, np.uint8)

    def band_width(sentence):
        drawn = visualizer.draw_referring(img, None, sentence).astype(int)
        return int((drawn[4, :, 0] < 60).sum())  # the dark band behind the text
    dollars = band_width('the $5 and the $10 bills')
    letters = band_width('the S5 and the S10 bills')
    assert dollars > 0 and abs(dollars - letters) <= 6, (dollars, letters)
