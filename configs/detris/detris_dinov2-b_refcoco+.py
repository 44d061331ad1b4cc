# DETRIS-B on RefCOCO+ (UNC splits), DETRIS's config/refcoco+/DETRIS_base.yaml
_base_ = [
    '../_base_/models/detris_dinov2-b.py', '../_base_/datasets/refcoco+.py',
    '../_base_/schedules/schedule_65e.py', '../_base_/default_runtime.py'
]
