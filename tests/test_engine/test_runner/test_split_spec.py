"""A bad ``test_cfg.splits`` list is refused, naming the entry at fault
(sera_mm/engine/runner/split_spec.py)."""
import pytest

from sera_mm.engine.runner import normalize_splits


@pytest.mark.parametrize('splits, words', [
    ([], ['non-empty']),
    ('val', ['non-empty']),
    (['val', dict(split='val')], ["test_cfg.splits[1]", "'name'"]),
    (['val', 'val'], ["'val'", 'twice']),
    ([dict(name='a b', split='val')], ["'a b'"]),
    ([dict(name='x')], ["'x'", 'overrides no']),
    ([3], ['test_cfg.splits[0]']),
])
def test_bad_splits(splits, words):
    with pytest.raises(ValueError) as e:
        normalize_splits(splits)
    for word in words:
        assert word in str(e.value), (word, str(e.value))
