# RefCOCO+ (UNC splits): data/coco/refcoco+/{instances.json, refs(unc).p};
# test splits val, testA, testB as RefCOCO's
_base_ = './refcoco.py'
train_dataloader = dict(
    dataset=dict(ann_file='refcoco+/instances.json', split_file='refcoco+/refs(unc).p'))
val_dataloader = dict(
    dataset=dict(ann_file='refcoco+/instances.json', split_file='refcoco+/refs(unc).p'))
test_dataloader = val_dataloader
