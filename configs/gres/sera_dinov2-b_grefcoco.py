# SERA-B on gRefCOCO (GRES, UNC splits) with a presence head that answers
# "no target" (configs/gres/README.md); the model of
# configs/sera/sera_dinov2-b_refcoco.py otherwise.
_base_ = [
    '../_base_/models/sera_dinov2-b.py', '../_base_/datasets/grefcoco.py',
    '../_base_/schedules/schedule_65e.py', '../_base_/default_runtime.py'
]
model = dict(presence_head=dict(type='PresenceHead', in_channels=512, text_channels=512))
default_hooks = dict(checkpoint=dict(save_best='gIoU'))
