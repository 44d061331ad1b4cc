# DETRIS-L* (DETRIS's config/refcoco/DETRIS_large_mixed.yaml): trained once on
# RefCOCO + RefCOCO+ + RefCOCOg (umd) with wider adapters in every block but
# the first (DenseAligner width 384 in DINOv2 blocks 1-23, text adapters of
# width 384 in text blocks 1-11), 17 tokens; evaluated on every split.
_base_ = [
    '../_base_/models/detris_dinov2-l.py', '../_base_/datasets/refcoco_mixed.py',
    '../_base_/schedules/schedule_50e.py', '../_base_/default_runtime.py'
]
model = dict(
    text_encoder=dict(adapter_cfg=dict(channels=384), adapter_indices=tuple(range(1, 12))),
    backbone=dict(adapter_cfg=dict(channels=384), adapter_indices=tuple(range(1, 24))))
# DETRIS concatenates the three training splits as they are (its tools/mix.py);
# their images overlap the other sets' val/test images. Drop this line to
# remove those referents (MixedRefCOCODataset's default, as the SERA mixed config).
train_dataloader = dict(dataset=dict(holdout_splits=[]))
