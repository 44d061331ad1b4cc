# SERA with SERA-Fusion after the neck's projections (width 512) instead of
# on the backbone-width levels before them: cheaper
_base_ = '../sera/sera_dinov2-b_refcoco.py'
model = dict(neck=dict(fusion_position='after_proj'))
