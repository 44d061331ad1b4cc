"""Fixtures shared by every test package (shared helpers: tests/helpers/)."""
import pytest
import torch

# first, before any test module imports mmseg: on mmcv-lite (the torch 2.11
# suite, docs/en/environment.md) importing sera_mm provides mmcv.ops' pure ops
import sera_mm  # noqa: F401
from helpers.paths import TINY_CONFIG

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


def _forget_globals_made_since(loggers: set, scopes: set) -> None:
    """Closes and forgets the MMLogger instances and drops the DefaultScope
    instances created since the snapshot ``(loggers, scopes)``."""
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    for name in set(MMLogger._instance_dict) - loggers:
        logger = MMLogger._instance_dict.pop(name)
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
    for name in set(DefaultScope._instance_dict) - scopes:
        DefaultScope._instance_dict.pop(name)


def _global_snapshot() -> tuple:
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    return set(MMLogger._instance_dict), set(DefaultScope._instance_dict)


@pytest.fixture(autouse=True)
def _drop_globals_made_by_the_test():
    """Forgets the mmengine loggers and default scopes a test created, when
    it ends.

    MMLogger instances are process-global and keep a handler on the
    ``sys.stdout`` they were created with; under ``capsys`` that is pytest's
    capture file, closed after the test. A later test logging through such
    an instance would print 'Logging error' into its own captured output.
    The newest DefaultScope decides which registry every later ``build``
    searches: a Runner built with ``default_scope='mmengine'`` would make
    the next test on the same worker look for sera_mm's types there.
    """
    snapshot = _global_snapshot()
    yield
    _forget_globals_made_since(*snapshot)


@pytest.fixture(autouse=True, scope='module')
def _drop_globals_made_by_the_module():
    """The same for what a module's module-scoped fixtures (a trained toy
    Runner, say) created, when the module ends."""
    snapshot = _global_snapshot()
    yield
    _forget_globals_made_since(*snapshot)


def write_tiny_config(path: str, data_root: str) -> str:
    """The CPU demo config with its data on ``data_root`` and no workers."""
    with open(path, 'w') as f:
        f.write(f"_base_ = [{TINY_CONFIG!r}]\n"
                f"_loader = dict(batch_size=8, num_workers=0, persistent_workers=False,\n"
                f"               dataset=dict(data_root={data_root + '/'!r}))\n"
                "train_dataloader = _loader\nval_dataloader = _loader\n"
                "test_dataloader = _loader\n")
    return path


@pytest.fixture(scope='session')
def tiny_model_files(synthetic_refer, tmp_path_factory):
    """(config path, checkpoint path, data root) of a randomly initialised
    tiny SERA saved as an mmengine checkpoint."""
    from sera_mm.apis import init_model
    root = tmp_path_factory.mktemp('tiny_model')
    config = write_tiny_config(str(root / 'tiny.py'), synthetic_refer)
    torch.manual_seed(0)
    model = init_model(config)
    checkpoint = str(root / 'tiny.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=0)), checkpoint)
    return config, checkpoint, synthetic_refer
