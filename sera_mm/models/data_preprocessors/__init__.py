"""No class here: ``mmseg.SegDataPreProcessor`` does all the model needs.

Its ``cast_data`` moves every field of the data samples, ``text_tokens``
included, to the device; in training it stacks ``gt_sem_seg`` (give
``size=(448, 448)``: it refuses to run without ``size`` or
``size_divisor``); it converts BGR to RGB and normalises with the given
mean and std (CLIP's, in 0-255 RGB). ``tests/test_models/test_segmentors``
checks this.
"""
