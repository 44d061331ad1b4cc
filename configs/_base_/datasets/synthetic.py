# The synthetic REFER-format set written by
#   python tools/dataset_converters/generate_synthetic.py --out data/synthetic
# (images/, refsyn/instances.json, refsyn/refs(unc).p). Small images and a
# small input size (112): the CPU demo and the tests train on it. DETRIS's
# letterbox protocol, as the full-size data sets (refcoco.py).
_base_ = './refcoco.py'
train_dataloader = dict(
    num_workers=1,
    dataset=dict(
        data_root='data/synthetic/',
        ann_file='refsyn/instances.json',
        split_file='refsyn/refs(unc).p',
        data_prefix=dict(img_path='images/'),
        pipeline=[
            dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
            dict(type='LoadReferringMask'),
            dict(type='Letterbox', scale=112, mode='affine', soft_masks=True),
            dict(type='PackReferringInputs'),
        ]))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        data_root='data/synthetic/',
        ann_file='refsyn/instances.json',
        split_file='refsyn/refs(unc).p',
        data_prefix=dict(img_path='images/'),
        pipeline=[
            dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
            dict(type='Letterbox', scale=112, mode='affine'),
            dict(type='LoadReferringMask'),
            dict(type='PackReferringInputs'),
        ]))
# the test loader: the val loader's changes too
test_dataloader = val_dataloader
