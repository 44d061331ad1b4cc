# DETRIS's 50-epoch schedule (G-Ref google and every DETRIS-L config):
# Adam 1e-4, no weight decay, x0.1 at epoch 35
_base_ = './schedule_65e.py'
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=50, milestones=[35], gamma=0.1)
]
train_cfg = dict(max_epochs=50)
