# The CPU demo: SERA at toy size, on top of the toy DETRIS (as the full-size
# SERA configs add SERA to DETRIS-B), trained from scratch on the synthetic set.
_base_ = './detris-tiny_synthetic.py'
model = dict(
    backbone=dict(adapter_cfg=dict(type='SERAAdapter')),
    neck=dict(fusion_cfg=dict(type='SERAFusion', router=dict(type='NoisyTopKRouter', top_k=2),
                              zero_init_experts=True,
                              # FFN 2x in the context expert (4x at full size), for time
                              expert_cfgs=dict(context=dict(ffn_ratio=2.)))),
    moe_loss=dict(type='MoERegularizationLoss'))
custom_hooks = [dict(type='RoutingStatsHook', interval=50)]
# every parameter takes part in every step (unpicked experts get zero
# gradients): DDP need not search for unused parameters
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=False)
