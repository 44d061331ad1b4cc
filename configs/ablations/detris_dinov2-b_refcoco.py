# The DETRIS-style baseline: plain adapters, no SERA-Fusion
_base_ = '../sera/sera_dinov2-b_refcoco.py'
model = dict(
    backbone=dict(adapter_cfg=dict(_delete_=True, type='PlainAdapter', channels=128,
                                   text_channels=512, num_heads=4)),
    neck=dict(fusion_cfg=None))
