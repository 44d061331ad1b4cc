import pytest
from mmengine.registry import DefaultScope

import sera_mm.models  # noqa: F401  (registers the modules)


@pytest.fixture(autouse=True)
def sera_scope():
    """Builds every config of the model tests in the 'sera_mm' scope,
    whatever default scope an earlier test left behind."""
    with DefaultScope.overwrite_default_scope('sera_mm'):
        yield
