# RefCOCOg (UMD splits: train/val/test): data/coco/refcocog/{instances.json, refs(umd).p}
# Longer sentences: 22 tokens instead of 17 (DETRIS's word_len for G-Ref umd).
_base_ = './refcoco.py'
context_length = 22
train_pipeline = [
    {{_base_.load_image}},
    dict(type='LoadReferringMask'),
    {{_base_.train_letterbox}},
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackReferringInputs'),
]
test_pipeline = [
    {{_base_.load_image}},
    {{_base_.test_letterbox}},
    dict(type='LoadReferringMask'),
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackReferringInputs'),
]
_ann = dict(ann_file='refcocog/instances.json', split_file='refcocog/refs(umd).p')
train_dataloader = dict(dataset=dict(_ann, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(_ann, pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(_ann, split='test', pipeline=test_pipeline))
test_splits = ['val', 'test']
