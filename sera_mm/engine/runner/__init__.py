"""Test-time engine pieces: the multi-split test loop and its helpers."""
from .checkpoint_match import (check_checkpoint_matches, check_state_dict_matches,
                               load_state_dict_keys)
from .cpu_distributed import setup_cpu_distributed
from .multi_split_test_loop import MultiSplitTestLoop
from .results_table import COLUMNS, GRES_COLUMNS, TABLE_JSON, TABLE_MD, write_table
from .split_spec import (dataloader_for_split, normalize_splits,
                         select_splits)

__all__ = [
    'MultiSplitTestLoop', 'check_checkpoint_matches', 'check_state_dict_matches',
    'load_state_dict_keys',
    'setup_cpu_distributed', 'COLUMNS', 'GRES_COLUMNS', 'TABLE_JSON', 'TABLE_MD',
    'write_table', 'dataloader_for_split', 'normalize_splits', 'select_splits'
]
