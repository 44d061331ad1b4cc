# SERA with Top-2 routing and each SERA-Fusion expert's layers at their own
# random init (no zero-initialised residual branches)
_base_ = './sera_dinov2-b_top2_refcoco.py'
model = dict(neck=dict(fusion_cfg=dict(zero_init_experts=False)))
