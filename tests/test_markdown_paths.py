"""Every repository path that the Markdown docs name exists.

The docs are README.md, configs/**/README.md and docs/**/*.md. A path is
named by a link or, outside code blocks, as ``./...`` or ``../...``
(resolved against the Markdown file's folder, as GitHub resolves links) or
as ``configs/...``, ``docs/...``, ``sera_mm/...``, ``tests/...`` or
``tools/...`` (prose, inline code and command lines alike), with shell
braces expanded (``top{1,2}`` names both), ``*`` matched as a glob and a
placeholder (``<set>``) as ``*``. Paths that
commands create (``work_dirs/``, ``data/``, ``pretrain/``, the installed
package's ``sera_mm/.mim/``) are not repository paths and are not checked.
"""
import glob
import os.path as osp
import re
from typing import List

import pytest

from helpers.paths import REPO

#: The top-level folders of the repository whose paths the docs name.
REPO_FOLDERS = ('configs', 'docs', 'sera_mm', 'tests', 'tools')
#: Made by an install (setup.py links or copies configs/ and tools/ there)
#: or by a documented command (custom2refer.py --config-out in custom_data.md).
CREATED = ('sera_mm/.mim/', 'configs/custom/')
# A path starts at a word boundary that is not inside a longer path
# (work_dirs/x/configs/..., ../docs/..., $A/...) and runs over path
# characters, {a,b} groups and <placeholders>; trailing dots end
# sentences, not paths.
_NAMED = re.compile(r'(?<![\w./$-])(?:' + '|'.join(REPO_FOLDERS) +
                    r')/(?:[\w.+*/-]|\{[^{}\s]*\}|<[\w-]+>)*')
_PLACEHOLDER = re.compile(r'<[\w-]+>')
# the same, relative to the Markdown file's folder (``../ablations/x.py``)
_FENCED = re.compile(r'^```.*?^```', re.S | re.M)
_RELATIVE = re.compile(r'(?<![\w./$-])\.\.?/(?:[\w.+*/-]|\{[^{}\s]*\}|<[\w-]+>)+')
_LINK = re.compile(r'\]\(([^()\s]+)\)')
_BRACES = re.compile(r'\{([^{}]*)\}')


def markdown_files() -> List[str]:
    """The Markdown docs, relative to the repository root, sorted."""
    found = glob.glob(osp.join(REPO, 'configs', '**', 'README.md'), recursive=True)
    found += glob.glob(osp.join(REPO, 'docs', '**', '*.md'), recursive=True)
    return ['README.md'] + sorted(osp.relpath(p, REPO) for p in found)


def expand_braces(path: str) -> List[str]:
    """``a{b,c}d{e,f}`` -> ``abde, abdf, acde, acdf`` (as the shell does)."""
    match = _BRACES.search(path)
    if match is None:
        return [path]
    head, tail = path[:match.start()], path[match.end():]
    return [p for part in match.group(1).split(',') for p in expand_braces(head + part + tail)]


def named_paths(text: str, md_file: str) -> List[str]:
    """The repository paths (relative to the root, braces unexpanded) that
    ``text``, the content of ``md_file``, names; sorted, without repeats."""
    paths = {m.group(0).rstrip('.') for m in _NAMED.finditer(text)}
    paths = {p for p in paths if not p.startswith(CREATED)}
    folder = osp.dirname(md_file)
    # in a code block, ../ is relative to a config or a working folder
    prose = _FENCED.sub('', text)
    paths.update(osp.normpath(osp.join(folder, m.group(0).rstrip('.')))
                 for m in _RELATIVE.finditer(prose))
    for target in _LINK.findall(text):
        if re.match(r'[a-z][a-z0-9+.-]*:', target) or target.startswith('#'):
            continue  # http(s):, mailto:, an anchor of the same page
        target = target.split('#', 1)[0]
        paths.add(osp.normpath(osp.join(folder, target)))
    return sorted(paths)


def missing_paths(text: str, md_file: str, root: str = REPO) -> List[str]:
    """The paths of :func:`named_paths` that do not exist under ``root``
    (a brace expansion or glob counts as missing when any of its names
    matches nothing)."""
    def found(path: str) -> bool:
        pattern = _PLACEHOLDER.sub('*', path.replace('[', '[[]'))
        return bool(glob.glob(osp.join(glob.escape(root), pattern)))

    return [path for path in named_paths(text, md_file)
            if not all(found(p) for p in expand_braces(path))]


def test_the_walk_covers_the_docs():
    files = markdown_files()
    assert 'README.md' in files and 'docs/en/method.md' in files
    assert 'configs/sera/README.md' in files and 'configs/ablations/README.md' in files


@pytest.mark.parametrize('md_file', markdown_files())
def test_every_path_the_docs_name_exists(md_file):
    with open(osp.join(REPO, md_file), encoding='utf-8') as f:
        text = f.read()
    assert missing_paths(text, md_file) == [], f'{md_file} names paths that do not exist'


def test_a_misspelt_path_is_found_however_it_is_written():
    good = ('`configs/sera/sera_dinov2-b_refcoco.py`, [method](../../docs/en/method.md), '
            'python tools/train.py configs/ablations/sera_dinov2-b_top{1,2}_refcoco.py, '
            'work_dirs/x/configs/nothing.py, https://example.org/tools/nothing.py, '
            '`configs/sera/sera_dinov2-b_<set>.py`, see sera_mm/models/routers.py.\n'
            '```python\n_base_ = \'./sera_dinov2-b_adapter-only_refcoco.py\'\n```\n')
    assert missing_paths(good, 'configs/sera/README.md') == []
    assert 'configs/sera/sera_dinov2-b_refcoco.py' in named_paths(good, 'configs/sera/README.md')
    assert 'docs/en/method.md' in named_paths(good, 'configs/sera/README.md')
    misspelt = {
        '`configs/sera/sera_dinov2-b_refcocco.py`': 'configs/sera/sera_dinov2-b_refcocco.py',
        'run tools/analysis_tools/paper_table.py': 'tools/analysis_tools/paper_table.py',
        '[method](../../docs/en/methods.md)': 'docs/en/methods.md',
        'configs/ablations/sera_dinov2-b_top{1,5}_refcoco.py':
            'configs/ablations/sera_dinov2-b_top{1,5}_refcoco.py',
        '[a figure](../../docs/images/nothing.png#top)': 'docs/images/nothing.png',
        '`configs/sera/detris_<set>.py`': 'configs/sera/detris_<set>.py',
        '(`../ablations/sera_dinov2-b_top9_refcoco.py`)':
            'configs/ablations/sera_dinov2-b_top9_refcoco.py',
    }
    for text, path in misspelt.items():
        assert missing_paths(good + ' ' + text, 'configs/sera/README.md') == [path], text
