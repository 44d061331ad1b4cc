"""Each ablation config differs from its parent by at most two leaf keys
(each ablation config inherits its parent and overrides one or two keys)."""
import os.path as osp
import re

import pytest
from mmengine.config import Config

from helpers.configs import MISSING, REPO, ablation_files, declared_base, leaf_diff

ABLATIONS = ablation_files()
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
    names = [osp.basename(f) for f in ABLATIONS]
    for name in ('sera_dinov2-b_adapter-only_refcoco.py', 'sera_dinov2-b_top1_refcoco.py',
                 'sera_dinov2-b_top4_refcoco.py', 'sera_dinov2-b_fusion-after-proj_refcoco.py',
                 'sera_dinov2-b_pad-mask_refcoco.py', 'sera_dinov2-b_from-detris_refcoco.py',
                 'adapter-only-tiny_synthetic.py', 'sera-tiny_top1_synthetic.py'):
        assert name in names, names


@pytest.mark.parametrize('path', ABLATIONS)
def test_ablation_overrides_at_most_two_keys(path):
    parent_path = declared_base(path)
    diff = leaf_diff(loaded(parent_path), loaded(path))
    listing = '\n'.join(f'  {key}: {old!r} -> {new!r}' for key, old, new in diff)
    print(f'{path} vs {parent_path}: {len(diff)} changed leaf keys\n{listing}')
    assert len(diff) <= MAX_CHANGED_KEYS, \
        f'{path} changes {len(diff)} leaf keys of {parent_path}:\n{listing}'
    # top-k ablations change nothing but k (top-2 is the parent itself)
    topk = re.search(r'_top(\d)_', osp.basename(path))   # not e.g. '_top2-random-init_'
    if topk:
        k = int(topk.group(1))
        expected = [] if k == 2 else [('model.neck.fusion_cfg.router.top_k', 2, k)]
        assert diff == expected
    # the init ablations change nothing but the experts' initialisation
    if '_top2-random-init_' in osp.basename(path):
        assert diff == [('model.neck.fusion_cfg.zero_init_experts', True, False)]
    if '_from-detris_' in osp.basename(path):
        assert [key for key, _, _ in diff] == ['load_from']
