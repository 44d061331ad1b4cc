# RefCOCOg (UMD splits: train/val/test): data/coco/refcocog/{instances.json, refs(umd).p}
# Longer sentences: 22 tokens instead of 17 (SERA.md section 1).
_base_ = './refcoco.py'
context_length = 22
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadReferringMask'),
    dict(type='Letterbox', scale={{_base_.img_scale}}, pad_val={{_base_.pad_val}}),
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackReferringInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Letterbox', scale={{_base_.img_scale}}, pad_val={{_base_.pad_val}}),
    dict(type='LoadReferringMask'),
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackReferringInputs'),
]
_ann = dict(ann_file='refcocog/instances.json', split_file='refcocog/refs(umd).p')
train_dataloader = dict(dataset=dict(_ann, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(_ann, pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(_ann, split='test', pipeline=test_pipeline))
test_splits = ['val', 'test']
