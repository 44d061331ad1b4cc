# The DETRIS-style baseline at toy size: plain adapters, no SERA-Fusion
_base_ = '../sera-tiny_synthetic.py'
model = dict(
    backbone=dict(adapter_cfg=dict(_delete_=True, type='PlainAdapter', channels=32,
                                   text_channels={{_base_.width}}, num_heads=2)),
    neck=dict(fusion_cfg=None))
