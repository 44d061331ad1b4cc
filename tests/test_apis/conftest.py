"""A tiny SERA model on the synthetic fixture: a config file and a random
checkpoint, made once per session."""
import os.path as osp

import pytest
import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TINY_CONFIG = osp.join(REPO, 'configs', 'synthetic', 'sera-tiny_synthetic.py')


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
