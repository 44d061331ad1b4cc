# RefCOCO+ (UNC splits): data/coco/refcoco+/{instances.json, refs(unc).p}
_base_ = './refcoco.py'
_ann = dict(ann_file='refcoco+/instances.json', split_file='refcoco+/refs(unc).p')
train_dataloader = dict(dataset=_ann)
val_dataloader = dict(dataset=_ann)
test_dataloader = dict(dataset=_ann)
test_splits = ['val', 'testA', 'testB']
