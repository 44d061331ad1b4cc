# The synthetic REFER-format set written by
#   python tools/dataset_converters/generate_synthetic.py --out data/synthetic
# (images/, refsyn/instances.json, refsyn/refs(unc).p). Small images and a
# small input size: the CPU demo and the tests train on it.
_base_ = './refcoco.py'
data_root = 'data/synthetic/'
img_scale = 112
# DETRIS's letterbox protocol, as the full-size configs
train_letterbox = dict(type='Letterbox', scale=img_scale, pad_val={{_base_.pad_val}},
                       mode='affine', soft_masks=True)
test_letterbox = dict(type='Letterbox', scale=img_scale, pad_val={{_base_.pad_val}},
                      mode='affine')
train_pipeline = [
    {{_base_.load_image}},
    dict(type='LoadReferringMask'),
    train_letterbox,
    dict(type='TokenizeText', context_length={{_base_.context_length}}),
    dict(type='PackReferringInputs'),
]
test_pipeline = [
    {{_base_.load_image}},
    test_letterbox,
    dict(type='LoadReferringMask'),
    dict(type='TokenizeText', context_length={{_base_.context_length}}),
    dict(type='PackReferringInputs'),
]
_ann = dict(data_root=data_root, ann_file='refsyn/instances.json',
            split_file='refsyn/refs(unc).p', data_prefix=dict(img_path='images/'))
train_dataloader = dict(batch_size=16, num_workers=1, dataset=dict(_ann, pipeline=train_pipeline))
val_dataloader = dict(batch_size=16, num_workers=1, dataset=dict(_ann, pipeline=test_pipeline))
test_dataloader = dict(batch_size=16, num_workers=1, dataset=dict(_ann, pipeline=test_pipeline))
test_splits = ['val', 'testA', 'testB']
