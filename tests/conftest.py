"""Fixtures shared by every test package."""
import pytest

#: Images per split of the ``synthetic_refer`` fixture.
SYNTHETIC_FIXTURE_NUM_IMAGES = dict(train=12, val=4, testA=4, testB=4)


@pytest.fixture(scope='session')
def synthetic_refer(tmp_path_factory) -> str:
    """A tiny synthetic REFER set, generated once per test session.

    Returns its root (use as ``data_root``). Layout::

        images/SYN_*.jpg                       ~96..192 px, 3-6 shapes each
        refsyn/{instances.json, refs(unc).p, scenes.json}     flavour 'full'
        refsyn+/{instances.json, refs(unc).p, scenes.json}    'no_position'

    Dataset arguments: ``ann_file='refsyn/instances.json'``,
    ``split_file='refsyn/refs(unc).p'``, ``data_prefix=dict(img_path='images/')``,
    splits train / val / testA / testB. Treat it as read-only.
    """
    from sera_mm.datasets.synthetic import generate_synthetic_refer
    root = str(tmp_path_factory.mktemp('synthetic_refer'))
    for flavour in ('full', 'no_position'):
        generate_synthetic_refer(root, num_images=SYNTHETIC_FIXTURE_NUM_IMAGES,
                                 seed=0, flavour=flavour)
    return root
