"""sera_mm.utils.pretrained: finding and switching off pretrained weights."""
from sera_mm.utils.pretrained import disable_pretrained, pretrained_files


def _nested_cfg() -> dict:
    return dict(
        text_encoder=dict(pretrained='clip.pt', frozen=True),
        backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='x.pth'),
                      layers=[dict(init_cfg=[dict(type='Normal'),
                                             dict(type='Pretrained', checkpoint='y')])]),
        neck=(dict(init_cfg=dict(type='Pretrained', checkpoint='https://host/z.pth')), ),
        head=dict(init_cfg=dict(type='Normal'), pretrained=None))


def test_pretrained_files_names_every_reference_with_its_key():
    assert list(pretrained_files(_nested_cfg())) == [
        ('model.text_encoder.pretrained', 'clip.pt'),
        ('model.backbone.init_cfg.checkpoint', 'x.pth'),
        ('model.backbone.layers[0].init_cfg[1].checkpoint', 'y'),
        ('model.neck[0].init_cfg.checkpoint', 'https://host/z.pth'),
    ]


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
    assert list(pretrained_files(cfg)) == []


def test_a_list_of_only_pretrained_inits_becomes_none():
    cfg = dict(init_cfg=[dict(type='Pretrained', checkpoint='a')])
    assert disable_pretrained(cfg, 'x') == ['x.init_cfg']
    assert cfg['init_cfg'] is None
