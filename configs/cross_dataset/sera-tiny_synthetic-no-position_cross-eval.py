# The CPU demo model trained on the synthetic flavour 'no_position'
# (refsyn+/, no position words, like RefCOCO+), validated on its val, then
# scored on the splits of both flavours (the test table of
# sera-tiny_synthetic-full_cross-eval.py): on 'full' it meets position words
# it never trained on.
#   python tools/train.py configs/cross_dataset/sera-tiny_synthetic-no-position_cross-eval.py
_base_ = './sera-tiny_synthetic-full_cross-eval.py'
train_dataloader = dict(
    dataset=dict(ann_file='refsyn+/instances.json', split_file='refsyn+/refs(unc).p'))
val_dataloader = dict(
    dataset=dict(ann_file='refsyn+/instances.json', split_file='refsyn+/refs(unc).p'))
test_dataloader = val_dataloader
