"""No class here: ``mmseg.SegDataPreProcessor`` does all the model needs.

It moves the data samples to the device (the sentence stays in the
metainfo), stacks ``gt_sem_seg`` in training (the configs give
``size_divisor=1``: the letterbox makes every image its scale x scale),
converts BGR to RGB and normalises (CLIP's mean and std, 0-255 RGB).
"""
