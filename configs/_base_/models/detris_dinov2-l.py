# DETRIS-L: DETRIS-B's model on DINOv2 ViT-L/14 with 4 registers, DenseAligner
# in blocks 2,6,10,14,18,22 and the levels after blocks 8 and 16 (raw) and 23
# (after the final norm), as DETRIS's large configs.
_base_ = './detris_dinov2-b.py'
model = dict(
    backbone=dict(
        arch='large',
        out_indices=(8, 16, 23),
        adapter_indices=(2, 6, 10, 14, 18, 22),
        init_cfg=dict(checkpoint='pretrain/dinov2_vitl14_reg4_pretrain.pth')),
    neck=dict(in_channels=[1024, 1024, 1024]))
