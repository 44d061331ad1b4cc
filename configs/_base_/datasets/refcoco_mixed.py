# RefCOCO + RefCOCO+ + RefCOCOg (umd) train splits as one training set, with
# every referent whose image is in a val/test split of any of them removed
# (MixedRefCOCODataset logs how many per set and why). Layout as refcoco.py:
#   data/coco/train2014/*.jpg
#   data/coco/{refcoco,refcoco+,refcocog}/{instances.json, refs(*).p}
# Its models keep 17 tokens, as DETRIS's mixed configuration (longer RefCOCOg
# sentences are cut).
_base_ = './refcoco.py'
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='MixedRefCOCODataset',
        # RefCOCO's training set, inherited: its folder and pipeline
        data_root={{_base_.train_dataloader.dataset.data_root}},
        data_prefix={{_base_.train_dataloader.dataset.data_prefix}},
        pipeline={{_base_.train_dataloader.dataset.pipeline}},
        sources=[
            dict(name='refcoco', ann_file='refcoco/instances.json',
                 split_file='refcoco/refs(unc).p'),
            dict(name='refcoco+', ann_file='refcoco+/instances.json',
                 split_file='refcoco+/refs(unc).p'),
            dict(name='refcocog', ann_file='refcocog/instances.json',
                 split_file='refcocog/refs(umd).p'),
            # Not trained on; its val images are held out too, so that the
            # model can also be scored on G-Ref (google) val without leakage.
            # Drop this entry if that score is not wanted (more training data).
            dict(name='refcocog-google', ann_file='refcocog/instances.json',
                 split_file='refcocog/refs(google).p', train=False),
        ]))
# validated on RefCOCO val (the base's val_dataloader); tools/test.py
# evaluates every evaluation split of the three sets in one run (one table, a
# row each)
test_cfg = dict(splits=[
    dict(name='refcoco_val', ann_file='refcoco/instances.json',
         split_file='refcoco/refs(unc).p', split='val'),
    dict(name='refcoco_testA', ann_file='refcoco/instances.json',
         split_file='refcoco/refs(unc).p', split='testA'),
    dict(name='refcoco_testB', ann_file='refcoco/instances.json',
         split_file='refcoco/refs(unc).p', split='testB'),
    dict(name='refcoco+_val', ann_file='refcoco+/instances.json',
         split_file='refcoco+/refs(unc).p', split='val'),
    dict(name='refcoco+_testA', ann_file='refcoco+/instances.json',
         split_file='refcoco+/refs(unc).p', split='testA'),
    dict(name='refcoco+_testB', ann_file='refcoco+/instances.json',
         split_file='refcoco+/refs(unc).p', split='testB'),
    dict(name='refcocog-umd_val', ann_file='refcocog/instances.json',
         split_file='refcocog/refs(umd).p', split='val'),
    dict(name='refcocog-umd_test', ann_file='refcocog/instances.json',
         split_file='refcocog/refs(umd).p', split='test'),
    dict(name='refcocog-google_val', ann_file='refcocog/instances.json',
         split_file='refcocog/refs(google).p', split='val'),
])
