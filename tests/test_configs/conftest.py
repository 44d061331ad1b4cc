import pytest
from mmengine.registry import DefaultScope

import sera_mm


@pytest.fixture(autouse=True)
def sera_scope():
    """Every config here is loaded and built in the 'sera_mm' scope, with
    every module of the package registered, as the tools do."""
    sera_mm.register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('sera_mm'):
        yield
