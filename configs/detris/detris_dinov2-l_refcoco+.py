# DETRIS-L on RefCOCO+ (UNC splits), DETRIS's config/refcoco+/DETRIS_large.yaml
_base_ = [
    '../_base_/models/detris_dinov2-l.py', '../_base_/datasets/refcoco+.py',
    '../_base_/schedules/schedule_50e.py', '../_base_/default_runtime.py'
]
