# RefCOCOg (Google splits: train/val): data/coco/refcocog/{instances.json, refs(google).p}
_base_ = './refcoco.py'
_ann = dict(ann_file='refcocog/instances.json', split_file='refcocog/refs(google).p')
train_dataloader = dict(dataset=_ann)
val_dataloader = dict(dataset=_ann)
test_dataloader = dict(dataset=_ann)
test_splits = ['val']
