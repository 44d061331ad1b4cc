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


@pytest.fixture(autouse=True)
def _drop_loggers_made_by_the_test():
    """Forgets the mmengine loggers a test created, when it ends.

    MMLogger instances are process-global and keep a handler on the
    ``sys.stdout`` they were created with; under ``capsys`` that is pytest's
    capture file, closed after the test. A later test logging through such
    an instance would print 'Logging error' into its own captured output.
    """
    from mmengine.logging import MMLogger
    before = set(MMLogger._instance_dict)
    yield
    for name in set(MMLogger._instance_dict) - before:
        logger = MMLogger._instance_dict.pop(name)
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
