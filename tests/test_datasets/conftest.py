"""Fixtures of the dataset tests (the hand-made set is tests/helpers/refer.py)."""
import copy

import pytest

from helpers.refer import annotation_table, ref_table, write_refer


@pytest.fixture(scope='module')
def refer_root(tmp_path_factory) -> str:
    """The hand-made set, written once per module (read-only)."""
    return write_refer(str(tmp_path_factory.mktemp('refer')))


@pytest.fixture(scope='module')
def refer_tables():
    """Deep copies of the source tables: (annotations by id, refs by id)."""
    return ({a['id']: a for a in copy.deepcopy(annotation_table())},
            {r['ref_id']: r for r in ref_table()})
