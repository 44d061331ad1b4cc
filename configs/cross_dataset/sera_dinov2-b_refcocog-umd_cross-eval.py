# Zero-shot transfer: the RefCOCOg (umd) model
# (configs/sera/sera_dinov2-b_refcocog-umd.py, 22 tokens) scored on the val
# splits of RefCOCO and RefCOCO+, its own val first. Only the test data
# changes (see sera_dinov2-b_refcoco_cross-eval.py).
_base_ = '../sera/sera_dinov2-b_refcocog-umd.py'
test_cfg = dict(splits=[
    dict(name='refcocog-umd_val', ann_file='refcocog/instances.json',
         split_file='refcocog/refs(umd).p', split='val'),
    dict(name='refcoco_val', ann_file='refcoco/instances.json',
         split_file='refcoco/refs(unc).p', split='val'),
    dict(name='refcoco+_val', ann_file='refcoco+/instances.json',
         split_file='refcoco+/refs(unc).p', split='val'),
])
