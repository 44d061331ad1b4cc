# SERA at toy size with Top-4 routing in SERA-Fusion
_base_ = '../sera-tiny_synthetic.py'
model = dict(neck=dict(fusion_cfg=dict(router=dict(top_k=4))))
