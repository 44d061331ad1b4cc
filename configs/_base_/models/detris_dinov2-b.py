# DETRIS-B (Huang et al., AAAI 2025) as its authors ran it (docs/en/method.md):
# CLIP ViT-B/16 text tower (OpenAI weights, QuickGELU) with text adapters in
# text blocks 1,3,5,7,9,11; DINOv2 ViT-B/14 with 4 registers and DenseAligner
# in blocks 1,3,5,7,9,11; the levels after blocks 4 and 8 (raw) and 11 (after
# the final norm); DETRIS's neck, decoder (FFN 512) and projector. Only the
# adapters, neck, decoder and head train.
model = dict(
    type='ReferringSegmentor',
    data_preprocessor=dict(
        type='mmseg.SegDataPreProcessor',
        # CLIP's mean/std for the DINOv2 input too, as DETRIS
        mean=[122.7709383, 116.7460125, 104.09373615],
        std=[68.5005327, 66.6321579, 70.32316305],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=0,
        # The data set's Letterbox makes every image its scale x scale (the
        # one setting of the input size): no padding to add. mmseg's
        # stack_batch needs a size or a size_divisor; 1 pads nothing.
        size_divisor=1),
    text_encoder=dict(
        type='OpenCLIPTextEncoder',
        model_name='ViT-B-16-quickgelu',  # OpenAI's weights need QuickGELU
        # Tokens per sentence, the one setting of the sentence length: the
        # encoder tokenises the sentences with it (17; the G-Ref umd configs
        # set 22, DETRIS's word_len)
        context_length=17,
        pretrained='pretrain/ViT-B-16.pt',
        frozen=True,
        adapter_cfg=dict(type='TextAdapter', channels=64),
        adapter_indices=(1, 3, 5, 7, 9, 11),
        adapter_scale=0.2,
        pad_mask='zero_token'),  # DETRIS: word == 0
    backbone=dict(
        type='DINOv2',
        arch='base',
        img_size=518,
        patch_size=14,
        num_register_tokens=4,
        out_indices=(4, 8, 11),
        pos_embed_mode='detris',
        trainable='none',
        adapter_cfg=dict(type='DenseAligner', channels=128, text_channels=512),
        adapter_indices=(1, 3, 5, 7, 9, 11),
        adapter_scale=0.2,
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrain/dinov2_vitb14_reg4_pretrain.pth')),
    neck=dict(
        type='TextGatedNeck',
        in_channels=[768, 768, 768],
        channels=512,
        text_channels=512,
        gate='detris'),
    decoder=dict(
        type='VisionLanguageDecoder',
        num_layers=3,
        channels=512,
        text_channels=512,
        num_heads=8,
        feedforward_channels=512,
        dropout=0.1),
    decode_head=dict(type='DynamicConvHead', in_channels=512, channels=256, text_channels=512),
    train_cfg=dict(),
    # DETRIS's post-processing: sigmoid, bicubic (corners aligned) to the
    # input, the inverse letterbox warp, > 0.35. The threshold's one setting:
    # the metric scores these masks (pred_sem_seg).
    test_cfg=dict(threshold=0.35, upsample=dict(mode='bicubic', align_corners=True)))
# DETRIS's recipe: 32 samples per step as 2 GPUs x 16 with SyncBN, fp16 autocast
# with dynamic loss scaling (`tools/train.py --amp` reads amp_dtype)
sync_bn = 'torch'
amp_dtype = 'float16'
