# The empty-mask rule instead of the presence head: "no target" when the
# predicted mask (at the original image size) has fewer than 64 pixels;
# no new weights, so a converted DETRIS-B checkpoint tests as it is.
_base_ = './detris_dinov2-b_grefcoco.py'
model = dict(presence_head=None, test_cfg=dict(min_mask_pixels=64))
