# RefCOCOg (UMD splits: train/val/test): data/coco/refcocog/{instances.json, refs(umd).p}
# Longer sentences: its model configs set model.text_encoder.context_length=22
# (DETRIS's word_len for G-Ref umd) instead of 17.
_base_ = './refcoco.py'
train_dataloader = dict(
    dataset=dict(ann_file='refcocog/instances.json', split_file='refcocog/refs(umd).p'))
val_dataloader = dict(
    dataset=dict(ann_file='refcocog/instances.json', split_file='refcocog/refs(umd).p'))
test_dataloader = dict(
    dataset=dict(ann_file='refcocog/instances.json', split_file='refcocog/refs(umd).p',
                 split='test'))
test_cfg = dict(splits=['val', 'test'])
