# The CPU demo of GRES: the toy SERA of the CPU demo with a presence head,
# trained from scratch on the synthetic gRefCOCO-format set
#   python tools/dataset_converters/generate_synthetic.py --out data/synthetic --format grefcoco
# (sentences naming one shape, several or none; configs/gres/README.md).
_base_ = '../synthetic/sera-tiny_synthetic.py'
model = dict(
    presence_head=dict(type='PresenceHead', in_channels=128, text_channels=128, channels=128),
    # the share of no-target referents in the training split (651 of 3,766):
    # a head trained on that prior says "no target" above it when the
    # evidence favours it (balanced errors); 0.5 would favour "target"
    test_cfg=dict(no_target_threshold=0.17))
train_dataloader = dict(
    dataset=dict(type='GRefCOCODataset', ann_file='grefsyn/instances.json',
                 split_file='grefsyn/grefs(unc).json'))
val_dataloader = dict(
    dataset=dict(type='GRefCOCODataset', ann_file='grefsyn/instances.json',
                 split_file='grefsyn/grefs(unc).json'))
test_dataloader = val_dataloader
val_evaluator = dict(type='GRefSegMetric')
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(save_best='gIoU'))
