# +SERA-Adapter at toy size: SERA-Adapters, no SERA-Fusion
_base_ = '../sera-tiny_synthetic.py'
model = dict(neck=dict(fusion_cfg=None))
