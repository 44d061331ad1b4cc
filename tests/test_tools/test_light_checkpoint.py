"""Light checkpoints of the demo model with frozen encoders: the same
weights and logits as the full checkpoint, an exact resume, a smaller file,
and a refusal naming the frozen file when it changed; the converter both
ways."""
import os.path as osp
import shutil

import numpy as np
import pytest
import torch

from helpers.checkpoint_io import assert_same_state, load_runner_checkpoint
from helpers.tool_runner import TINY_CONFIG, explain, load_tool, run_tool, train_options
from sera_mm.utils.light_checkpoint import FROZEN_SOURCES, light_records
from sera_mm.utils.pretrained import pretrained_sources

pytestmark = pytest.mark.integration


@pytest.fixture(scope='module')
def frozen(tiny_trained, tmp_path_factory):
    """A config of the demo model whose DINOv2 and text tower are frozen and
    read from files (the backbone from a trained demo checkpoint, the text
    tower from an open_clip-layout file), and two 2-epoch trainings of it,
    light and full. Returns a dict of paths."""
    root = tmp_path_factory.mktemp('light')
    backbone_file = str(root / 'demo_epoch_1.pth')
    shutil.copy(tiny_trained.checkpoint, backbone_file)
    state = load_runner_checkpoint(backbone_file)['state_dict']
    text_file = str(root / 'text_tower.pt')
    torch.save({k[len('text_encoder.text.'):]: v for k, v in state.items()
                if k.startswith('text_encoder.text.')}, text_file)
    config = str(root / 'frozen.py')
    with open(config, 'w') as f:
        f.write(f"_base_ = [{osp.abspath(TINY_CONFIG)!r}]\n"
                "model = dict(\n"
                f"    text_encoder=dict(pretrained={text_file!r}, frozen=True),\n"
                "    backbone=dict(trainable='none', init_cfg=dict(\n"
                f"        _delete_=True, type='Pretrained', checkpoint={backbone_file!r}, "
                f"prefix='backbone.')))\n")
    runs = {}
    for name, flags in (('light', ['--light-checkpoints']), ('full', [])):
        runs[name] = str(root / name)
        proc = run_tool('train.py', [config, '--work-dir', runs[name], *flags],
                        train_options(tiny_trained.data_root, max_epochs=2))
        assert proc.returncode == 0, explain(proc)
    return dict(config=config, backbone_file=backbone_file, text_file=text_file,
                root=root, data_root=tiny_trained.data_root, **runs)


def _ckpt(run: str, epoch: int = 2) -> dict:
    return load_runner_checkpoint(osp.join(run, f'epoch_{epoch}.pth'))


def test_light_checkpoint_holds_the_trained_weights_and_names_the_files(frozen):
    light, full = _ckpt(frozen['light']), _ckpt(frozen['full'])
    records = light['meta'][FROZEN_SOURCES]
    assert {r['module']: r['file'] for r in records} == {
        'backbone': frozen['backbone_file'], 'text_encoder': frozen['text_file']}
    left_out = {k for r in records for k in r['keys']}
    assert left_out and left_out == set(full['state_dict']) - set(light['state_dict'])
    assert all(k.startswith(('backbone.', 'text_encoder.text.')) for k in left_out)
    assert not any('adapters' in k for k in left_out)  # trained, so stored
    assert_same_state({k: v for k, v in full['state_dict'].items() if k not in left_out},
                      light['state_dict'], 'light state_dict')
    assert_same_state(light['optimizer'], full['optimizer'], 'optimizer')
    assert_same_state(light['param_schedulers'], full['param_schedulers'], 'schedulers')
    assert osp.getsize(osp.join(frozen['light'], 'epoch_2.pth')) < \
        0.6 * osp.getsize(osp.join(frozen['full'], 'epoch_2.pth'))


def test_light_checkpoint_gives_the_full_checkpoints_logits(frozen):
    from sera_mm.apis import inference_referring, init_model
    image = np.random.RandomState(0).randint(0, 255, (96, 128, 3), dtype=np.uint8)
    logits = {}
    for name in ('light', 'full'):
        model = init_model(frozen['config'], osp.join(frozen[name], 'epoch_2.pth'))
        logits[name] = inference_referring(model, image, 'the red circle').seg_logits.data
    assert torch.equal(logits['light'], logits['full'])


def test_light_checkpoint_resumes_exactly(frozen):
    work_dir = str(frozen['root'] / 'resumed')
    for epochs, flags in ((1, []), (2, ['--resume'])):
        proc = run_tool('train.py', [frozen['config'], '--work-dir', work_dir,
                                     '--light-checkpoints', *flags],
                        train_options(frozen['data_root'], max_epochs=epochs))
        assert proc.returncode == 0, explain(proc)
    resumed, straight = load_runner_checkpoint(osp.join(work_dir, 'epoch_2.pth')), _ckpt(
        frozen['light'])
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        assert_same_state(resumed[key], straight[key], key)


def test_changed_or_missing_frozen_file_is_refused_naming_it(frozen, tmp_path):
    from sera_mm.apis import init_model
    light = osp.join(frozen['light'], 'epoch_2.pth')
    text_file = frozen['text_file']
    original = torch.load(text_file)
    try:
        changed = dict(original)
        changed['ln_final.bias'] = changed['ln_final.bias'] + 1
        torch.save(changed, text_file)
        with pytest.raises(ValueError, match=f'{text_file}.*changed'):
            init_model(frozen['config'], light)
        proc = run_tool('test.py', [frozen['config'], light, '--work-dir', str(tmp_path)],
                        [f'test_dataloader.dataset.data_root={frozen["data_root"]}/',
                         'test_dataloader.num_workers=0',
                         'test_dataloader.persistent_workers=False'])
        assert proc.returncode != 0 and text_file in proc.output \
            and 'changed since the checkpoint was saved' in proc.output, explain(proc)
        shutil.move(text_file, text_file + '.moved')
        with pytest.raises(FileNotFoundError, match=f'{text_file} not found'):
            init_model(frozen['config'], light)
    finally:
        if osp.exists(text_file + '.moved'):
            shutil.move(text_file + '.moved', text_file)
        torch.save(original, text_file)


def test_converter_turns_full_into_light_and_back(frozen, tmp_path):
    tool = load_tool('model_converters/light_checkpoint.py')
    full = osp.join(frozen['full'], 'epoch_2.pth')
    light, back = str(tmp_path / 'light.pth'), str(tmp_path / 'full.pth')
    assert 'full -> light' in tool.convert(frozen['config'], full, light)
    made, trained = load_runner_checkpoint(light), _ckpt(frozen['light'])
    assert_same_state(made['state_dict'], trained['state_dict'], 'state_dict')
    assert made['meta'][FROZEN_SOURCES] == trained['meta'][FROZEN_SOURCES]
    assert 'light -> full' in tool.convert(frozen['config'], light, back)
    restored = load_runner_checkpoint(back)
    assert_same_state(restored['state_dict'], _ckpt(frozen['full'])['state_dict'], 'state_dict')
    assert FROZEN_SOURCES not in restored['meta']
    with pytest.raises(FileExistsError, match='exists'):
        tool.convert(frozen['config'], full, back)


def test_frozen_weights_the_file_does_not_give_stay_in_the_checkpoint(frozen):
    """After load_from replaced a frozen weight, the file no longer gives it:
    it is stored, not referenced."""
    from sera_mm.apis import init_model
    model = init_model(frozen['config'], osp.join(frozen['full'], 'epoch_2.pth'))
    sources = pretrained_sources(model.cfg.model)
    keys = {k for r in light_records(model, sources) for k in r['keys']}
    assert 'backbone.cls_token' in keys
    with torch.no_grad():
        model.backbone.cls_token.add_(1)
    keys_after = {k for r in light_records(model, sources) for k in r['keys']}
    assert keys_after == keys - {'backbone.cls_token'}
