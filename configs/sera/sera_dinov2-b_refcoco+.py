# SERA on top of DETRIS-B, RefCOCO+
_base_ = [
    '../_base_/models/sera_dinov2-b.py', '../_base_/datasets/refcoco+.py',
    '../_base_/schedules/schedule_65e.py', '../_base_/default_runtime.py'
]
# the text encoder takes the tokens the data set's pipelines make
model = dict(text_encoder=dict(context_length={{_base_.context_length}}))
