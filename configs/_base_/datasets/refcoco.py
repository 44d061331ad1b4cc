# RefCOCO (UNC splits) in the layout mmdetection documents:
#   data/coco/train2014/*.jpg
#   data/coco/refcoco/{instances.json, refs(unc).p}
# Every setting is written in the key that reads it (no variables copied into
# several keys), so --cfg-options KEY=VALUE changes what it names, e.g.
# train_dataloader.dataset.data_root=DIR (docs/en/configs.md). The other data
# sets inherit this file and change their own keys.
#
# Images are read as stored, without their EXIF orientation: the annotation
# files describe the stored pixels (instances.json's sizes are the stored
# sizes, and COCO's and REFER's own viewers, pycocotools and skimage, do not
# rotate), while OpenCV's default would turn a square image under its
# unturned mask (a non-square one fails LoadReferringMask's size check).
#
# DETRIS's letterbox to 448 x 448 (the model's input size): one affine warp
# (fractional scale and offsets, bicubic, CLIP's mean colour as the border,
# Letterbox's default pad_val); training masks warped linearly, hence soft at
# the edges. mode='resize' is sera_mm's bilinear resize + integer padding
# with binary masks (docs/en/method.md, s. 6).
#
# The sentence stays text: the model's text encoder tokenises it with its own
# context_length (configs/_base_/models/).
#
# 16 per GPU: DETRIS's 32 samples per step on 2 GPUs (drop_last as DETRIS)
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='RefCOCODataset',
        data_root='data/coco/',
        ann_file='refcoco/instances.json',
        split_file='refcoco/refs(unc).p',
        split='train',
        data_prefix=dict(img_path='train2014/'),
        pipeline=[
            dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
            dict(type='LoadReferringMask'),
            dict(type='Letterbox', scale=448, mode='affine', soft_masks=True),
            dict(type='PackReferringInputs'),
        ]))
val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='RefCOCODataset',
        data_root='data/coco/',
        ann_file='refcoco/instances.json',
        split_file='refcoco/refs(unc).p',
        split='val',
        test_mode=True,
        data_prefix=dict(img_path='train2014/'),
        # the mask is decoded after the letterbox: metrics use the original size
        pipeline=[
            dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
            dict(type='Letterbox', scale=448, mode='affine'),
            dict(type='LoadReferringMask'),
            dict(type='PackReferringInputs'),
        ]))
test_dataloader = val_dataloader
# The metric scores the masks the model predicts (pred_sem_seg, thresholded
# at the model's test_cfg.threshold, configs/_base_/models/).
val_evaluator = dict(type='RefSegMetric')
test_evaluator = val_evaluator
# What tools/test.py evaluates, in one run with the model loaded once (one
# table, a row per split): the one setting of the test splits;
# tools/test.py --splits picks some of them.
test_cfg = dict(type='MultiSplitTestLoop', splits=['val', 'testA', 'testB'])
