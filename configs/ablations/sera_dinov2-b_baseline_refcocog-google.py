# Baseline, RefCOCOg (google): the paper's component table, first row. DETRIS-B's
# model (DenseAligners, no SERA-Fusion, no MoE loss) trained as SERA is: one
# GPU, batch 16, BitFit + LN in DINOv2 (held fixed over the table's rows).
# DETRIS's own recipe is configs/detris/detris_dinov2-b_refcocog-google.py.
_base_ = './sera_dinov2-b_adapter-only_refcocog-google.py'
model = dict(backbone=dict(adapter_cfg=dict(type='DenseAligner')), moe_loss=None)
