# + SERA-Adapter, RefCOCOg (google): the paper's component table, second row
# (SERA-Adapters in the backbone, no SERA-Fusion)
_base_ = '../sera/sera_dinov2-b_refcocog-google.py'
model = dict(neck=dict(fusion_cfg=None))
