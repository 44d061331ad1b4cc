# RefCOCOg (Google splits: train/val): data/coco/refcocog/{instances.json, refs(google).p}
_base_ = './refcoco.py'
train_dataloader = dict(
    dataset=dict(ann_file='refcocog/instances.json', split_file='refcocog/refs(google).p'))
val_dataloader = dict(
    dataset=dict(ann_file='refcocog/instances.json', split_file='refcocog/refs(google).p'))
test_dataloader = val_dataloader
test_cfg = dict(splits=['val'])
