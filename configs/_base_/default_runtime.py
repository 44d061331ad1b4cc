default_scope = 'sera_mm'
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py and tools/test.py switch to gloo when CUDA is absent
    dist_cfg=dict(backend='nccl'),
)
# mask fill + outline + the sentence as a caption (tools/test.py --show-dir)
visualizer = dict(type='ReferringVisualizer', vis_backends=[dict(type='LocalVisBackend')],
                  name='visualizer', alpha=0.45)
log_processor = dict(by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # the new checkpoint is complete (written to a temporary file, then
    # renamed) and named in last_checkpoint before an outdated one is removed
    checkpoint=dict(type='SafeCheckpointHook', by_epoch=True, interval=1,
                    max_keep_ckpts=2, save_best='mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # enabled=True (tools/train.py --light-checkpoints): checkpoints leave out
    # the frozen weights their pretrained files give; loading always rebuilds them
    light_checkpoint=dict(type='LightCheckpointHook', enabled=False),
    # a NaN/Inf loss stops the training naming the iteration and the last checkpoint
    finite_check=dict(type='FiniteCheckHook'),
    # each epoch's randomness from (seed, epoch): --resume continues exactly
    epoch_seed=dict(type='EpochSeedHook'),
    # one picture per sentence (mmseg's hook names them by image file)
    visualization=dict(type='ReferringVisualizationHook'))
