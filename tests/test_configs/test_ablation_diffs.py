"""Each ablation config differs from its parent by at most two leaf keys
(each ablation config inherits its parent and overrides one or two keys),
and by exactly the keys its row of ABLATION_EXPECTATIONS names."""
import os.path as osp

import pytest
from mmengine.config import Config

from helpers.config_expectations import ABLATION_EXPECTATIONS
from helpers.configs import MISSING, REPO, config_files, declared_base, leaf_diff

ABLATIONS = sorted(ABLATION_EXPECTATIONS)
MAX_CHANGED_KEYS = 2


def loaded(path: str) -> dict:
    return Config.fromfile(osp.join(REPO, path)).to_dict()


def test_leaf_diff_counts_leaves_key_by_key():
    parent = dict(model=dict(a=1, sub=dict(k=2, drop=3, keep=[1, 2]), gone=dict(x=1)),
                  same='s')
    child = dict(model=dict(a=1, sub=dict(k=1, keep=[1, 2], new=None), gone=None),
                 same='s')
    assert leaf_diff(parent, child) == [
        ('model.gone', dict(x=1), None),
        ('model.sub.drop', 3, MISSING),
        ('model.sub.k', 2, 1),
        ('model.sub.new', MISSING, None),
    ]
    assert leaf_diff(parent, parent) == []
    assert leaf_diff(dict(a=[dict(t=1)]), dict(a=[dict(t=2)])) == [('a', [dict(t=1)], [dict(t=2)])]
    assert leaf_diff(dict(a=1), dict(a=True)) == [('a', 1, True)]


def test_ablations_are_found():
    """The table names every config of an ``ablations`` folder (a renamed,
    added or removed one fails here)."""
    on_disk = [f for f in config_files(bases=False) if 'ablations' in f.split(osp.sep)]
    assert ABLATIONS == on_disk, (
        f'not in the table: {sorted(set(on_disk) - set(ABLATIONS))}; '
        f'not on disk: {sorted(set(ABLATIONS) - set(on_disk))}')
    names = [osp.basename(f) for f in ABLATIONS]
    for name in ('sera_dinov2-b_adapter-only_refcoco.py', 'sera_dinov2-b_top1_refcoco.py',
                 'sera_dinov2-b_top4_refcoco.py', 'sera_dinov2-b_fusion-after-proj_refcoco.py',
                 'sera_dinov2-b_pad-mask_refcoco.py', 'sera_dinov2-b_from-detris_refcoco.py',
                 'adapter-only-tiny_synthetic.py', 'sera-tiny_top1_synthetic.py'):
        assert name in names, names


@pytest.mark.parametrize('path', ABLATIONS)
def test_ablation_overrides_at_most_two_keys(path):
    expected = ABLATION_EXPECTATIONS[path]
    parent_path = declared_base(path)
    assert parent_path == expected.parent
    diff = leaf_diff(loaded(parent_path), loaded(path))
    listing = '\n'.join(f'  {key}: {old!r} -> {new!r}' for key, old, new in diff)
    print(f'{path} vs {parent_path}: {len(diff)} changed leaf keys\n{listing}')
    assert len(diff) <= MAX_CHANGED_KEYS, \
        f'{path} changes {len(diff)} leaf keys of {parent_path}:\n{listing}'
    # e.g. top-k ablations change nothing but k (top-2 is the parent
    # itself), the init ablations nothing but the experts' initialisation
    if expected.pinned:
        assert diff == list(expected.diff)
    else:
        assert [key for key, _, _ in diff] == list(expected.diff)
