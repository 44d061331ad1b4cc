_base_ = [
    '../_base_/models/sera_dinov2-b.py', '../_base_/datasets/refcocog_umd.py',
    '../_base_/schedules/schedule_65e.py', '../_base_/default_runtime.py'
]
model = dict(text_encoder=dict(context_length=22))
