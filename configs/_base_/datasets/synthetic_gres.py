# The synthetic gRefCOCO-format set written by
#   python tools/dataset_converters/generate_synthetic.py --out data/synthetic \
#       --format grefcoco
# (images/ shared with the REFER set, grefsyn/instances.json,
# grefsyn/grefs(unc).json): sentences naming one shape, several ("all the red
# shapes") or none. The small images and input size of synthetic.py.
_base_ = './synthetic.py'
train_dataloader = dict(
    dataset=dict(type='GRefCOCODataset', ann_file='grefsyn/instances.json',
                 split_file='grefsyn/grefs(unc).json'))
val_dataloader = dict(
    dataset=dict(type='GRefCOCODataset', ann_file='grefsyn/instances.json',
                 split_file='grefsyn/grefs(unc).json'))
test_dataloader = val_dataloader
