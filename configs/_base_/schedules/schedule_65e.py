# DETRIS's 65-epoch schedule: Adam 1e-4, no weight decay, x0.1 at epochs 35 and 55
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-4, weight_decay=0.),
    constructor='TrainableOptimWrapperConstructor')
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=65,
         milestones=[35, 55], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=65, val_interval=1)
val_cfg = dict(type='ValLoop')
# test_cfg: the data set's (configs/_base_/datasets/), a MultiSplitTestLoop
