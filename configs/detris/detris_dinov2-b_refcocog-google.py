# DETRIS-B on RefCOCOg (google splits), DETRIS's config/refcocog_g/DETRIS_base.yaml (50 epochs)
_base_ = [
    '../_base_/models/detris_dinov2-b.py', '../_base_/datasets/refcocog_google.py',
    '../_base_/schedules/schedule_50e.py', '../_base_/default_runtime.py'
]
