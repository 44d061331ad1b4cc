# SERA with Top-2 routing in SERA-Fusion (the paper's Top-k ablation)
_base_ = '../sera/sera_dinov2-b_refcoco.py'
model = dict(neck=dict(fusion_cfg=dict(router=dict(top_k=2))))
