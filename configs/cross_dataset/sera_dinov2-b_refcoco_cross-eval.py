# Zero-shot transfer: the RefCOCO model (configs/sera/sera_dinov2-b_refcoco.py)
# scored on the val splits of RefCOCO+ and RefCOCOg, its own val first for
# reference. Only the test data changes; the model and its pipeline (17
# tokens: longer RefCOCOg sentences are cut, as the model would cut them)
# stay the trained ones.
#   python tools/test.py configs/cross_dataset/sera_dinov2-b_refcoco_cross-eval.py CKPT
# The sets share COCO images: some val images of the other sets are RefCOCO
# training images (with other sentences), so "zero-shot" is in the
# expressions, not in the images.
_base_ = '../sera/sera_dinov2-b_refcoco.py'
test_cfg = dict(splits=[
    dict(name='refcoco_val', ann_file='refcoco/instances.json',
         split_file='refcoco/refs(unc).p', split='val'),
    dict(name='refcoco+_val', ann_file='refcoco+/instances.json',
         split_file='refcoco+/refs(unc).p', split='val'),
    dict(name='refcocog-umd_val', ann_file='refcocog/instances.json',
         split_file='refcocog/refs(umd).p', split='val'),
    dict(name='refcocog-google_val', ann_file='refcocog/instances.json',
         split_file='refcocog/refs(google).p', split='val'),
])
