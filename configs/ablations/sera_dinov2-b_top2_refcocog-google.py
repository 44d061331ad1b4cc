# SERA with Top-2 routing in SERA-Fusion, RefCOCOg (google): the paper's Top-k table, k = 2
# (the accuracy/cost trade-off, one key away from the paper config)
_base_ = '../sera/sera_dinov2-b_refcocog-google.py'
model = dict(neck=dict(fusion_cfg=dict(router=dict(top_k=2))))
