# SERA on top of DETRIS-B, RefCOCO+
_base_ = [
    '../_base_/models/sera_dinov2-b.py', '../_base_/datasets/refcoco+.py',
    '../_base_/schedules/schedule_65e.py', '../_base_/default_runtime.py'
]
