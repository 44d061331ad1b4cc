# SERA on DINOv2 ViT-B/14 (4 registers) + CLIP ViT-B/16 text, SERA.md sections 1-5.
# Frozen encoders (BitFit + LN in the image encoder), SERA-Adapters in blocks
# 1,3,5,7,9,11, SERA-Fusion (Top-2) on the levels of blocks 3, 7, 11.
data_preprocessor = dict(
    type='mmseg.SegDataPreProcessor',
    # CLIP's mean/std for the DINOv2 input too (as DETRIS)
    mean=[122.7709383, 116.7460125, 104.09373615],
    std=[68.5005327, 66.6321579, 70.32316305],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=0,
    size=(448, 448))
model = dict(
    type='ReferringSegmentor',
    data_preprocessor=data_preprocessor,
    text_encoder=dict(
        type='OpenCLIPTextEncoder',
        model_name='ViT-B-16',
        context_length=17,
        quick_gelu=True,  # OpenAI's weights were trained with QuickGELU
        pretrained='pretrain/ViT-B-16.pt',
        frozen=True),
    backbone=dict(
        type='DINOv2',
        arch='base',
        img_size=518,
        patch_size=14,
        num_register_tokens=4,
        out_indices=(3, 7, 11),
        trainable='bitfit_ln',
        # sentence_channels (512) is read only with router_text=True
        adapter_cfg=dict(type='SERAAdapter', channels=128, text_channels=512, num_heads=4),
        adapter_indices=(1, 3, 5, 7, 9, 11),
        adapter_scale=0.2,
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrain/dinov2_vitb14_reg4_pretrain.pth')),
    neck=dict(
        type='TextGatedNeck',
        in_channels=[768, 768, 768],
        channels=512,
        text_channels=512,
        # zero_init_experts: not in SERA.md (it leaves the init open); every
        # expert's residual branch starts at 0, so SERA-Fusion starts as the
        # identity, as the adapters do. With each layer's own random init,
        # SERA Top-2 fell below the baseline on the synthetic ladder (README).
        fusion_cfg=dict(type='SERAFusion',
                        router=dict(type='NoisyTopKRouter', top_k=2),
                        zero_init_experts=True)),
    decoder=dict(
        type='VisionLanguageDecoder',
        num_layers=3,
        channels=512,
        text_channels=512,
        num_heads=8,
        feedforward_channels=2048,
        dropout=0.1),
    decode_head=dict(type='DynamicConvHead', in_channels=512, channels=256, text_channels=512),
    moe_loss=dict(type='MoERegularizationLoss'),
    train_cfg=dict(),
    test_cfg=dict(threshold=0.35))
# experts not picked by any sample of a rank get no gradient on that rank
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
