# SERA on top of DETRIS-B, RefCOCOg (google splits; DETRIS's 50 epochs)
_base_ = [
    '../_base_/models/sera_dinov2-b.py', '../_base_/datasets/refcocog_google.py',
    '../_base_/schedules/schedule_50e.py', '../_base_/default_runtime.py'
]
