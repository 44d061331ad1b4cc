"""A font chain for captions that has a glyph for every character.

matplotlib (mmengine's Visualizer) draws captions in DejaVu Sans, which has
no Chinese, Japanese or Korean: such a sentence would come out as empty
boxes. :func:`caption_font` picks, among the fonts matplotlib knows, the
fewest that cover the sentence, as a family list (matplotlib's fallback
chain). Fonts are optional: Debian/Ubuntu ``fonts-noto-cjk`` (CJK) and
``fonts-symbola`` (monochrome emoji; colour emoji fonts hold bitmaps that
matplotlib cannot scale and are skipped); after installing, remove
matplotlib's font cache (``~/.cache/matplotlib/fontlist-*.json``).
"""
import functools
import unicodedata
import warnings
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Set, Tuple

#: What a character no installed font has is drawn as.
REPLACEMENT = '?'
#: Fonts whose glyphs are placeholders, not characters: matplotlib's "Last
#: Resort" font draws every code point as a box naming its Unicode block.
NOT_GLYPHS = ('last resort', 'lastresort')
#: Printed with the warning: where the fonts come from.
INSTALL_HINT = ('install a font that has them, e.g. fonts-noto-cjk (Chinese, Japanese, '
                'Korean) or fonts-symbola (emoji) on Debian/Ubuntu, then clear '
                "matplotlib's font cache (~/.cache/matplotlib)")


class MissingGlyphWarning(UserWarning):
    """No installed font has a glyph for some characters of a caption."""


class CaptionFont(NamedTuple):
    """What :func:`caption_font` picked for one text."""
    families: Tuple[str, ...]  # matplotlib family list, the default font first
    text: str                  # the text to draw (uncovered characters replaced)
    missing: Tuple[str, ...]   # the characters no installed font has


#: Characters already named in a warning (each is named once per process).
_warned: Set[str] = set()


def _needs_glyph(char: str) -> bool:
    """Whether a character is drawn (format and control characters,
    variation selectors and spaces are not)."""
    if char.isspace():
        return False
    category = unicodedata.category(char)
    if category in ('Cc', 'Cf', 'Zl', 'Zp', 'Zs'):
        return False
    code = ord(char)
    return not (0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF)


def _font_path(entry):
    """What ``matplotlib.font_manager.get_font`` takes for a FontEntry."""
    from matplotlib import font_manager
    index = getattr(entry, 'index', 0) or 0
    font_path = getattr(font_manager, 'FontPath', None)
    return font_path(entry.fname, index) if font_path and index else entry.fname


@functools.lru_cache(maxsize=None)
def _charmap(path) -> Optional[FrozenSet[int]]:
    """Code points of a font file, or None if matplotlib cannot draw it at
    any size (a bitmap-only colour emoji font, a broken file)."""
    from matplotlib import font_manager
    try:
        font = font_manager.get_font(path)
        font.set_size(12, 72)
        return frozenset(font.get_charmap())
    except Exception:  # FreeType errors come as RuntimeError, ValueError ...
        return None


@functools.lru_cache(maxsize=1)
def _default_family() -> Tuple[str, object]:
    """(family name, path) of matplotlib's default sans-serif font."""
    from matplotlib import font_manager
    path = font_manager.findfont(font_manager.FontProperties(family=['sans-serif']))
    return font_manager.get_font(path).family_name, path


def _candidates() -> List[Tuple[str, object]]:
    """(family, path) of every font matplotlib knows (but placeholder
    fonts), one upright regular face per family, sans-serif families
    first."""
    from matplotlib import font_manager
    best: Dict[str, Tuple[tuple, object]] = {}
    for entry in font_manager.fontManager.ttflist:
        if any(word in entry.name.lower() for word in NOT_GLYPHS):
            continue
        weight = entry.weight if isinstance(entry.weight, int) else 400
        rank = (entry.style != 'normal', abs(weight - 400), 'sans' not in entry.name.lower())
        if entry.name not in best or rank < best[entry.name][0]:
            best[entry.name] = (rank, _font_path(entry))
    return [(name, path) for name, (rank, path) in
            sorted(best.items(), key=lambda kv: (kv[1][0][2], kv[0]))]


def caption_font(text: str, warn: bool = True) -> CaptionFont:
    """The font families that draw ``text``, and the text to draw.

    The default font comes first; then, each time, the font covering most
    of the characters still missing, until none is missing or no font has
    the rest. Those are replaced by :data:`REPLACEMENT` and, with ``warn``,
    named in a :class:`MissingGlyphWarning` (once per character and
    process). Characters that are not drawn (spaces, joiners, variation
    selectors) are dropped when no font of the chain has them.
    """
    family, path = _default_family()
    families = [family]
    covered = set(_charmap(path) or ())
    needed = {c for c in text if _needs_glyph(c) and ord(c) not in covered}
    if needed:
        charmaps = [(name, _charmap(p)) for name, p in _candidates() if name != family]
        charmaps = [(name, cm) for name, cm in charmaps if cm]
        while needed:
            name, cm = max(charmaps, key=lambda nc: sum(ord(c) in nc[1] for c in needed),
                           default=(None, frozenset()))
            got = {c for c in needed if ord(c) in cm}
            if not got:
                break
            families.append(name)
            covered |= cm
            needed -= got
    missing = tuple(sorted(needed, key=text.index))
    drawn = ''.join(REPLACEMENT if c in needed else c for c in text
                    if _needs_glyph(c) or c.isspace() or ord(c) in covered)
    if warn and missing:
        new = [c for c in missing if c not in _warned]
        if new:
            _warned.update(new)
            names = ', '.join(f'{c!r} (U+{ord(c):04X})' for c in new)
            warnings.warn(
                f'caption {text!r}: no installed font has a glyph for {names}; they are '
                f'drawn as {REPLACEMENT!r}: {INSTALL_HINT}', MissingGlyphWarning,
                stacklevel=2)
    return CaptionFont(tuple(families), drawn, missing)
