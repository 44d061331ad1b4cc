# gRefCOCO (generalized referring segmentation, GRES; UNC splits) as
# distributed, in the layout of the other data sets:
#   data/coco/train2014/*.jpg
#   data/coco/grefcoco/{instances.json, grefs(unc).json}   (or grefs(unc).p)
# A sentence names one object, several or none: GRefCOCODataset's mask is
# the union of the listed instances (all zeros for none) and each sample
# carries no_target and num_targets. Pipelines, loaders and test splits are
# RefCOCO's (refcoco.py).
_base_ = './refcoco.py'
train_dataloader = dict(
    dataset=dict(type='GRefCOCODataset', ann_file='grefcoco/instances.json',
                 split_file='grefcoco/grefs(unc).json'))
val_dataloader = dict(
    dataset=dict(type='GRefCOCODataset', ann_file='grefcoco/instances.json',
                 split_file='grefcoco/grefs(unc).json'))
test_dataloader = val_dataloader
# GRES's protocol (gIoU, cIoU, N-acc, T-acc, Pr@X; docs/en/usage.md)
val_evaluator = dict(type='GRefSegMetric')
test_evaluator = val_evaluator
