"""Reading the Runner checkpoints the tools write, in the test process."""
import torch

from sera_mm.utils import register_checkpoint_safe_globals


def load_runner_checkpoint(path: str) -> dict:
    """``torch.load(weights_only=True)`` with sera_mm's allow-list.

    A HistoryBuffer is built first so that the result does not depend on
    which tests ran before in this process (mmengine fills
    ``HistoryBuffer._statistics_methods`` in the first ``__init__``); a
    fresh process, where no buffer exists yet, is tested through the tools
    themselves and by ``test_checkpoint_loads_in_fresh_process``.
    """
    from mmengine.logging import HistoryBuffer
    HistoryBuffer()
    register_checkpoint_safe_globals()
    return torch.load(path, map_location='cpu', weights_only=True)


def assert_same_state(actual, expected, where: str = 'state') -> None:
    """Asserts two nested containers of tensors and plain values are equal,
    tensors bit for bit (same dtype and shape)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f'{where}: {type(actual)} is not a dict'
        assert set(actual) == set(expected), \
            f'{where}: keys differ: {sorted(map(str, set(actual) ^ set(expected)))}'
        for k in expected:
            assert_same_state(actual[k], expected[k], f'{where}[{k!r}]')
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), \
            f'{where}: {actual!r} != {expected!r}'
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_state(a, e, f'{where}[{i}]')
    elif isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f'{where}: not a tensor'
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, \
            f'{where}: {actual.dtype} {tuple(actual.shape)} != ' \
            f'{expected.dtype} {tuple(expected.shape)}'
        assert torch.equal(actual, expected), f'{where}: values differ'
    else:
        assert actual == expected, f'{where}: {actual!r} != {expected!r}'
