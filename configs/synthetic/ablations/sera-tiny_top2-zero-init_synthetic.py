# SERA at toy size, Top-2, with every SERA-Fusion expert's residual branch
# zero-initialised (the module starts as the identity)
_base_ = './sera-tiny_top2_synthetic.py'
model = dict(neck=dict(fusion_cfg=dict(zero_init_experts=True)))
