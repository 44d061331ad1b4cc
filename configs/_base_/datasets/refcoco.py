# RefCOCO (UNC splits) in the layout mmdetection documents:
#   data/coco/train2014/*.jpg
#   data/coco/refcoco/{instances.json, refs(unc).p}
dataset_type = 'RefCOCODataset'
data_root = 'data/coco/'
img_scale = 448
# Tokens per sentence, 22 for RefCOCOg (umd): the one owner; the pipelines
# and the text encoder (each model+data config) derive theirs from it.
context_length = 17
# CLIP mean colour in BGR (images are BGR until the data preprocessor)
pad_val = (104.09373615, 116.7460125, 122.7709383)
# DETRIS's letterbox: one affine warp (fractional scale and offsets, bicubic,
# CLIP-mean border); training masks warped linearly, hence soft at the edges.
# mode='resize' is sera_mm's bilinear resize + integer padding with binary
# masks (docs/en/method.md, s. 6).
train_letterbox = dict(type='Letterbox', scale=img_scale, pad_val=pad_val, mode='affine',
                       soft_masks=True)
test_letterbox = dict(type='Letterbox', scale=img_scale, pad_val=pad_val, mode='affine')

# Images are read as stored, without their EXIF orientation: the annotation
# files describe the stored pixels (instances.json's sizes are the stored
# sizes, and COCO's and REFER's own viewers, pycocotools and skimage, do not
# rotate), while OpenCV's default would turn a square image under its
# unturned mask (a non-square one fails LoadReferringMask's size check).
load_image = dict(type='LoadImageFromFile', color_type='color_ignore_orientation')
train_pipeline = [
    load_image,
    dict(type='LoadReferringMask'),
    train_letterbox,
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackReferringInputs'),
]
# the mask is decoded after the letterbox: metrics use the original size
test_pipeline = [
    load_image,
    test_letterbox,
    dict(type='LoadReferringMask'),
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackReferringInputs'),
]
# 16 per GPU: DETRIS's 32 samples per step on 2 GPUs (drop_last as DETRIS)
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='refcoco/instances.json',
        split_file='refcoco/refs(unc).p',
        split='train',
        data_prefix=dict(img_path='train2014/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='refcoco/instances.json',
        split_file='refcoco/refs(unc).p',
        split='val',
        test_mode=True,
        data_prefix=dict(img_path='train2014/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# val_evaluator/test_evaluator: in configs/_base_/models/ (the model's threshold)
# tools/test.py evaluates each, one table; the one owner of the test splits
# (a MultiSplitTestLoop without splits reads it)
test_splits = ['val', 'testA', 'testB']
