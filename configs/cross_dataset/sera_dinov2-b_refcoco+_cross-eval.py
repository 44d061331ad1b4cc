# Zero-shot transfer: the RefCOCO+ model (configs/sera/sera_dinov2-b_refcoco+.py)
# scored on the val splits of RefCOCO and RefCOCOg, its own val first. Only
# the test data changes (see sera_dinov2-b_refcoco_cross-eval.py). RefCOCO+
# has no location words; RefCOCO's and RefCOCOg's sentences do.
_base_ = '../sera/sera_dinov2-b_refcoco+.py'
test_cfg = dict(splits=[
    dict(name='refcoco+_val', ann_file='refcoco+/instances.json',
         split_file='refcoco+/refs(unc).p', split='val'),
    dict(name='refcoco_val', ann_file='refcoco/instances.json',
         split_file='refcoco/refs(unc).p', split='val'),
    dict(name='refcocog-umd_val', ann_file='refcocog/instances.json',
         split_file='refcocog/refs(umd).p', split='val'),
    dict(name='refcocog-google_val', ann_file='refcocog/instances.json',
         split_file='refcocog/refs(google).p', split='val'),
])
