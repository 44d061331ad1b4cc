# SERA with Top-2 routing in SERA-Fusion, RefCOCO: the paper's Top-k table, k = 2
# (the accuracy/cost trade-off, one key away from the paper config)
_base_ = '../sera/sera_dinov2-b_refcoco.py'
model = dict(neck=dict(fusion_cfg=dict(router=dict(top_k=2))))
