"""tools/train.py stops before any training step when an input is missing,
with an error that names the missing path."""
import json
import os
import os.path as osp
import shutil

import pytest

from sera_mm.datasets.refer_pickle import load_refer_pickle
from helpers.tool_runner import TINY_CONFIG, explain, run_tool, train_options

ANN_FILE = 'refsyn/instances.json'
REFS_FILE = 'refsyn/refs(unc).p'


def broken_copy(src: str, dst: str) -> str:
    """A copy of the synthetic set that the test may damage."""
    shutil.copytree(src, dst)
    return dst


def first_train_image(root: str) -> str:
    """Path of the image of the first training referent of ``root``."""
    refs = load_refer_pickle(osp.join(root, REFS_FILE))
    image_id = next(r['image_id'] for r in refs if r['split'] == 'train')
    with open(osp.join(root, ANN_FILE)) as f:
        files = {img['id']: img['file_name'] for img in json.load(f)['images']}
    return osp.join(root, 'images', files[image_id])


def setup_missing_data_root(fixture_root, tmp_path):
    root = str(tmp_path / 'no_such_data_root')
    return root, [], root


def setup_missing_refs_file(fixture_root, tmp_path):
    root = broken_copy(fixture_root, str(tmp_path / 'data'))
    missing = osp.join(root, REFS_FILE)
    os.remove(missing)
    return root, [], missing


def setup_missing_image(fixture_root, tmp_path):
    root = broken_copy(fixture_root, str(tmp_path / 'data'))
    missing = first_train_image(root)
    os.remove(missing)
    return root, [], missing


def setup_missing_backbone_weights(fixture_root, tmp_path):
    missing = str(tmp_path / 'pretrain' / 'dinov2_vitb14_reg4_pretrain.pth')
    # the tiny config has init_cfg=None: replace it rather than merge into it
    return fixture_root, ['model.backbone.init_cfg._delete_=True',
                          'model.backbone.init_cfg.type=Pretrained',
                          f'model.backbone.init_cfg.checkpoint={missing}'], missing


def setup_missing_text_weights(fixture_root, tmp_path):
    missing = str(tmp_path / 'pretrain' / 'ViT-B-16.pt')
    return fixture_root, [f'model.text_encoder.pretrained={missing}'], missing


@pytest.mark.integration
@pytest.mark.parametrize('setup', [
    setup_missing_data_root, setup_missing_refs_file, setup_missing_image,
    setup_missing_backbone_weights, setup_missing_text_weights
], ids=lambda f: f.__name__[len('setup_'):])
def test_train_tool_fails_fast_naming_the_path(setup, synthetic_refer, tmp_path):
    data_root, extra_options, missing = setup(synthetic_refer, tmp_path)
    assert not osp.exists(missing)
    proc = run_tool('train.py', [TINY_CONFIG, '--work-dir', str(tmp_path / 'work')],
                    train_options(data_root) + extra_options)
    assert proc.returncode != 0, explain(proc)
    assert 'FileNotFoundError' in proc.output, explain(proc)
    assert missing in proc.output, explain(proc)
    assert 'Epoch(train)' not in proc.output, explain(proc)
    assert not osp.exists(tmp_path / 'work' / 'epoch_1.pth')
