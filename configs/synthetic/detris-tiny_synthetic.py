# DETRIS's structure at toy size (text adapters, DenseAligners, DETRIS's neck,
# decoder and head), trained from scratch on the synthetic set: no pretrained
# weights exist at this size, so nothing is frozen.
_base_ = [
    '../_base_/models/detris_dinov2-b.py', '../_base_/datasets/synthetic.py',
    '../_base_/schedules/schedule_65e.py', '../_base_/default_runtime.py'
]
width = 128
model = dict(
    data_preprocessor=dict(size=(112, 112)),
    text_encoder=dict(
        # the data set's sentence length: trained from scratch, the tower's
        # position table holds exactly the positions the pipelines make
        context_length={{_base_.context_length}},
        text_cfg=dict(context_length={{_base_.context_length}}, vocab_size=49408, width=width,
                      heads=4, layers=2),
        embed_dim=width, pretrained=None, frozen=False,
        adapter_cfg=dict(channels=32), adapter_indices=(1, )),
    backbone=dict(
        # FFN 2x (DINOv2: 4x): a cheaper step for the CPU demo
        arch=dict(_delete_=True, embed_dims=width, num_layers=4, num_heads=4,
                  feedforward_channels=2 * width),
        img_size=112, patch_size=8, out_indices=(1, 2, 3), trainable='all',
        adapter_cfg=dict(channels=32, text_channels=width, embed_channels=32, num_heads=2),
        adapter_indices=(1, 3), init_cfg=None),
    neck=dict(in_channels=[width] * 3, channels=width, text_channels=width, num_heads=4),
    decoder=dict(num_layers=1, channels=width, text_channels=width, num_heads=4,
                 feedforward_channels=width, dropout=0.),
    decode_head=dict(
        in_channels=width, mid_channels=64, channels=32, text_channels=width,
        # Dice speeds up learning the masks from scratch (off in the paper configs)
        loss_decode=[
            dict(type='BinaryCrossEntropyLoss', loss_weight=1.0, loss_name='loss_bce'),
            dict(type='BinaryDiceLoss', loss_weight=1.0, loss_name='loss_dice')
        ]))
sync_bn = None  # one process on the CPU

max_epochs = 6
# fused: one kernel for all parameters instead of a loop of small ops per
# tensor (the toy model has many small tensors; the loop shows on the CPU)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4, fused=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5,
         convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=max_epochs))
