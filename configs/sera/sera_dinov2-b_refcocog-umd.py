# SERA on top of DETRIS-B, RefCOCOg (umd splits, 22 tokens)
_base_ = [
    '../_base_/models/sera_dinov2-b.py', '../_base_/datasets/refcocog_umd.py',
    '../_base_/schedules/schedule_65e.py', '../_base_/default_runtime.py'
]
# G-Ref (umd)'s longer sentences: 22 tokens (DETRIS's word_len), not 17
model = dict(text_encoder=dict(context_length=22))
