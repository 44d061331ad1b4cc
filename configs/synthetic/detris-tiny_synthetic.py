# DETRIS's structure at toy size (text adapters, DenseAligners, DETRIS's neck,
# decoder and head; width 128), trained from scratch on the synthetic set: no
# pretrained weights exist at this size, so nothing is frozen.
_base_ = [
    '../_base_/models/detris_dinov2-b.py', '../_base_/datasets/synthetic.py',
    '../_base_/schedules/schedule_65e.py', '../_base_/default_runtime.py'
]
model = dict(
    text_encoder=dict(
        # the tower's position table is the encoder's context_length (17,
        # inherited): trained from scratch, it holds the positions used
        text_cfg=dict(vocab_size=49408, width=128, heads=4, layers=2),
        embed_dim=128, pretrained=None, frozen=False,
        adapter_cfg=dict(channels=32), adapter_indices=(1, )),
    backbone=dict(
        # FFN 2x (DINOv2: 4x): a cheaper step for the CPU demo
        arch=dict(_delete_=True, embed_dims=128, num_layers=4, num_heads=4,
                  feedforward_channels=256),
        img_size=112, patch_size=8, out_indices=(1, 2, 3), trainable='all',
        adapter_cfg=dict(channels=32, text_channels=128, embed_channels=32, num_heads=2),
        adapter_indices=(1, 3), init_cfg=None),
    neck=dict(in_channels=[128, 128, 128], channels=128, text_channels=128, num_heads=4),
    decoder=dict(num_layers=1, channels=128, text_channels=128, num_heads=4,
                 feedforward_channels=128, dropout=0.),
    decode_head=dict(
        in_channels=128, mid_channels=64, channels=32, text_channels=128,
        # Dice speeds up learning the masks from scratch (off in the paper configs)
        loss_decode=[
            dict(type='BinaryCrossEntropyLoss', loss_weight=1.0, loss_name='loss_bce'),
            dict(type='BinaryDiceLoss', loss_weight=1.0, loss_name='loss_dice')
        ]))
sync_bn = None  # one process on the CPU

# 6 epochs: validated and saved at the last (--cfg-options
# train_cfg.max_epochs=N trains N; the cosine schedule keeps its 6 epochs)
train_cfg = dict(max_epochs=6, val_interval=6)
# fused: one kernel for all parameters instead of a loop of small ops per
# tensor (the toy model has many small tensors; the loop shows on the CPU)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4, fused=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=6, eta_min=1e-5,
         convert_to_iter_based=True)
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=6))
