"""No class here: ``mmseg.SegDataPreProcessor`` does all the model needs.

Its ``cast_data`` moves every field of the data samples to the device (the
sentence stays in the metainfo: the model's text encoder tokenises it); in
training it stacks ``gt_sem_seg`` (it needs a ``size`` or a
``size_divisor``: the configs give ``size_divisor=1``, no padding, as the
letterbox makes every image its scale x scale); it converts BGR to RGB and
normalises with the given mean and std (CLIP's, in 0-255 RGB).
``tests/test_models/test_segmentors`` checks this.
"""
