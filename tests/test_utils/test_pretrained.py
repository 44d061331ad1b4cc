"""sera_mm.utils.pretrained: the missing-file error at load, and switching
pretrained weights off."""
import pytest
from mmengine.config import Config

from sera_mm.registry import MODELS
from sera_mm.utils.pretrained import disable_pretrained, pretrained_file
from helpers.paths import TINY_CONFIG


def _nested_cfg() -> dict:
    return dict(
        text_encoder=dict(pretrained='clip.pt', frozen=True),
        backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='x.pth'),
                      layers=[dict(init_cfg=[dict(type='Normal'),
                                             dict(type='Pretrained', checkpoint='y')])]),
        neck=(dict(init_cfg=dict(type='Pretrained', checkpoint='https://host/z.pth')), ),
        head=dict(init_cfg=dict(type='Normal'), pretrained=None))


def test_a_missing_file_names_the_path_the_key_and_the_readme_section(tmp_path):
    present = tmp_path / 'w.pth'
    present.write_bytes(b'x')
    assert pretrained_file(str(present), 'DINOv2 init_cfg.checkpoint') == str(present)
    with pytest.raises(FileNotFoundError) as info:
        pretrained_file(str(tmp_path / 'gone.pth'), 'DINOv2 init_cfg.checkpoint')
    message = str(info.value)
    assert str(tmp_path / 'gone.pth') in message
    assert 'DINOv2 init_cfg.checkpoint' in message and "'Pretrained weights'" in message


@pytest.mark.parametrize('key, owner', [
    ('backbone', 'DINOv2 init_cfg.checkpoint'),
    ('text_encoder', 'OpenCLIPTextEncoder pretrained')])
def test_the_model_loads_its_pretrained_weights_through_the_check(tmp_path, key, owner):
    from sera_mm import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(TINY_CONFIG).model
    missing = str(tmp_path / 'pretrain' / 'weights.pth')
    if key == 'backbone':
        cfg.backbone.init_cfg = dict(type='Pretrained', checkpoint=missing)
    else:
        cfg.text_encoder.pretrained = missing
    model = MODELS.build(cfg)
    with pytest.raises(FileNotFoundError, match=f'{owner}: pretrained weights .*weights.pth'):
        model.init_weights()


def test_disable_pretrained_walks_nested_configs():
    cfg = _nested_cfg()
    changed = disable_pretrained(cfg)
    assert sorted(changed) == ['model.backbone.init_cfg', 'model.backbone.layers[0].init_cfg',
                               'model.neck[0].init_cfg', 'model.text_encoder.pretrained']
    assert cfg['text_encoder'] == dict(pretrained=None, frozen=True)
    assert cfg['backbone']['init_cfg'] is None
    assert cfg['backbone']['layers'][0]['init_cfg'] == [dict(type='Normal')]
    assert cfg['neck'][0]['init_cfg'] is None
    assert cfg['head'] == dict(init_cfg=dict(type='Normal'), pretrained=None)


def test_a_list_of_only_pretrained_inits_becomes_none():
    cfg = dict(init_cfg=[dict(type='Pretrained', checkpoint='a')])
    assert disable_pretrained(cfg, 'x') == ['x.init_cfg']
    assert cfg['init_cfg'] is None
