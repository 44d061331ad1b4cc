# The CPU demo's comparison: the empty-mask rule (fewer than 16 pixels at the
# original size: "no target") instead of the presence head.
_base_ = './sera-tiny_synthetic-gres.py'
model = dict(presence_head=None, test_cfg=dict(min_mask_pixels=16))
