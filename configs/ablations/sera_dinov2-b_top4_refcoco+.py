# SERA with Top-4 routing in SERA-Fusion, RefCOCO+: the paper's Top-k table, k = 4
# (the setting of the paper config itself, written out)
_base_ = '../sera/sera_dinov2-b_refcoco+.py'
model = dict(neck=dict(fusion_cfg=dict(router=dict(top_k=4))))
