# The CPU demo model trained on the synthetic flavour 'full' (refsyn/:
# attribute, position and comparison sentences), scored on the splits of
# both flavours; 'no_position' (refsyn+/, like RefCOCO+) shares the images
# and has no position words.
#   python tools/train.py configs/cross_dataset/sera-tiny_synthetic-full_cross-eval.py
#   python tools/test.py configs/cross_dataset/sera-tiny_synthetic-full_cross-eval.py CKPT
_base_ = '../synthetic/sera-tiny_synthetic.py'
test_cfg = dict(splits=[
    dict(name='refsyn_val', ann_file='refsyn/instances.json',
         split_file='refsyn/refs(unc).p', split='val'),
    dict(name='refsyn_testA', ann_file='refsyn/instances.json',
         split_file='refsyn/refs(unc).p', split='testA'),
    dict(name='refsyn_testB', ann_file='refsyn/instances.json',
         split_file='refsyn/refs(unc).p', split='testB'),
    dict(name='refsyn+_val', ann_file='refsyn+/instances.json',
         split_file='refsyn+/refs(unc).p', split='val'),
    dict(name='refsyn+_testA', ann_file='refsyn+/instances.json',
         split_file='refsyn+/refs(unc).p', split='testA'),
    dict(name='refsyn+_testB', ann_file='refsyn+/instances.json',
         split_file='refsyn+/refs(unc).p', split='testB'),
])
