# SERA with Top-1 routing in SERA-Fusion, RefCOCO+: the paper's Top-k table, k = 1
_base_ = '../sera/sera_dinov2-b_refcoco+.py'
model = dict(neck=dict(fusion_cfg=dict(router=dict(top_k=1))))
