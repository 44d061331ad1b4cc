# SERA trained once on RefCOCO + RefCOCO+ + RefCOCOg (umd) without any image
# of their val/test splits (nor of G-Ref google val), then evaluated on all
# nine evaluation splits in one run:
#   python tools/train.py configs/mixed/sera_dinov2-b_refcoco-mixed.py
#   python tools/test.py configs/mixed/sera_dinov2-b_refcoco-mixed.py CKPT
# Not in the SERA paper (it trains one model per data set). The union holds
# about 3x RefCOCO's referents, so an epoch of the inherited 65-epoch
# schedule is about 3x longer.
_base_ = [
    '../_base_/models/sera_dinov2-b.py', '../_base_/datasets/refcoco_mixed.py',
    '../_base_/schedules/schedule_65e.py', '../_base_/default_runtime.py'
]
