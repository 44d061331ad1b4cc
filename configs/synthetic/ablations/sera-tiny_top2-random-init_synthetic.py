# SERA at toy size, Top-2, with each SERA-Fusion expert's layers at their own
# random init (no zero-initialised residual branches)
_base_ = './sera-tiny_top2_synthetic.py'
model = dict(neck=dict(fusion_cfg=dict(zero_init_experts=False)))
