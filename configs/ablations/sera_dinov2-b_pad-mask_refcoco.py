# SERA with the words' padding mask in every SERA-Adapter's cross-attention
# (DETRIS lets the image tokens attend to the padding after the end token)
_base_ = '../sera/sera_dinov2-b_refcoco.py'
model = dict(backbone=dict(adapter_cfg=dict(use_pad_mask=True)))
