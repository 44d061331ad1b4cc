# SERA with Top-3 routing in SERA-Fusion, RefCOCOg (umd): the paper's Top-k table, k = 3
_base_ = '../sera/sera_dinov2-b_refcocog-umd.py'
model = dict(neck=dict(fusion_cfg=dict(router=dict(top_k=3))))
