# SERA warm-started from a DETRIS-B RefCOCO checkpoint converted with
#   python tools/model_converters/detris2sera_mm.py DETRIS_CKPT \
#       pretrain/detris/detris_dinov2-b_refcoco.pth
# Every DETRIS weight loads (text encoder with its adapters, DINOv2, the
# DenseAligner part of the SERA-Adapters, neck, decoder, head); the log lists
# the SERA-only weights that start fresh (SERA-Fusion, the adapters' experts
# and routers). SERA-Fusion starts as the identity; the SERA-Adapters' experts
# change the DenseAligners' attention queries from the first step, as
# SERA's formula F_c = F_ms + w_s E_s + w_b E_b says.
_base_ = '../sera/sera_dinov2-b_refcoco.py'
load_from = 'pretrain/detris/detris_dinov2-b_refcoco.pth'
