# SERA with BCE + Dice (Dice is an option, off in the paper configs)
_base_ = '../sera/sera_dinov2-b_refcoco.py'
model = dict(decode_head=dict(loss_decode=[
    dict(type='BinaryCrossEntropyLoss', loss_weight=1.0, loss_name='loss_bce'),
    dict(type='BinaryDiceLoss', loss_weight=1.0, loss_name='loss_dice')
]))
