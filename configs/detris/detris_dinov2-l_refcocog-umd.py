# DETRIS-L on RefCOCOg (umd splits, 22 tokens), DETRIS's config/refcocog_u/DETRIS_large.yaml
_base_ = [
    '../_base_/models/detris_dinov2-l.py', '../_base_/datasets/refcocog_umd.py',
    '../_base_/schedules/schedule_50e.py', '../_base_/default_runtime.py'
]
# G-Ref (umd)'s longer sentences: 22 tokens (DETRIS's word_len), not 17
model = dict(text_encoder=dict(context_length=22))
