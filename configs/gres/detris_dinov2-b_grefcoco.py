# DETRIS-B on gRefCOCO (GRES, UNC splits) with a presence head that answers
# "no target" (configs/gres/README.md). Only the presence head is new: a
# converted DETRIS-B checkpoint warm-starts it (load_from=...).
_base_ = [
    '../_base_/models/detris_dinov2-b.py', '../_base_/datasets/grefcoco.py',
    '../_base_/schedules/schedule_65e.py', '../_base_/default_runtime.py'
]
model = dict(presence_head=dict(type='PresenceHead', in_channels=512, text_channels=512))
default_hooks = dict(checkpoint=dict(save_best='gIoU'))
