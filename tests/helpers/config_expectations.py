"""What each config under configs/ is expected to hold, written out.

The tests read their expectations from these tables, never from a config's
file name: a renamed, added or removed config fails the tests that compare
the tables with the files on disk, and a config whose content drifts from
its row fails the test of that row.
"""
from typing import NamedTuple, Optional, Tuple


class ModelExpectation(NamedTuple):
    """What one (non-``_base_``) config builds."""
    #: 'full' (DINOv2 ViT-B/14 or ViT-L/14, built on the meta device) or
    #: 'tiny' (the CPU toy sizes, built and run on the CPU).
    size: str
    #: 'detris' (text adapters and DenseAligners, no fusion),
    #: 'adapter-only' (SERA-Adapters, no fusion) or 'sera' (SERA-Adapters
    #: and one SERA-Fusion per level).
    variant: str
    #: Top-k of the SERA-Fusion routers ('sera' only).
    top_k: Optional[int] = None
    #: Whether the experts start at zero ('sera' only).
    zero_init: Optional[bool] = None
    #: Channels the fusion works on: 'backbone' (its embed dims, before the
    #: projection) or 'neck' (after it) ('sera' only).
    fusion_width: Optional[str] = None
    #: Whether the image adapters use the text padding mask.
    pad_mask: bool = False
    #: Tokens per sentence, the text encoder's (which tokenises).
    context_length: int = 17
    #: Whether the head has a Dice loss term.
    dice: bool = False
    #: The MoE loss's ``load`` option ('sera' only).
    moe_load: Optional[str] = None
    #: Whether DINOv2's own biases and LayerNorm weights train, and nothing
    #: else of it (SERA's BitFit + LN; full size only).
    bitfit_ln: bool = False
    #: Whether the model has a presence head (GRES's "no target").
    presence: bool = False
    #: The empty-mask rule's ``test_cfg.min_mask_pixels`` (0: not set).
    min_mask_pixels: int = 0
    #: ``test_cfg.no_target_threshold`` (None: not set, the model's 0.5).
    no_target_threshold: Optional[float] = None


#: the paper's SERA: Top-4, the load term on the smooth assigned share
_SERA = dict(variant='sera', top_k=4, zero_init=True, fusion_width='backbone',
             moe_load='noisy_topk', bitfit_ln=True)
#: the CPU toy: Top-2, the load term on the softmax mass, all of DINOv2 trains
_SERA_TINY = dict(_SERA, top_k=2, moe_load='soft_mass', bitfit_ln=False)
_DETRIS = dict(variant='detris')
#: the data sets of the paper's Top-k tables, and those of its component table
_TOP_K_SETS = ('refcoco', 'refcoco+', 'refcocog-google', 'refcocog-umd')
_COMPONENT_SETS = ('refcoco', 'refcoco+', 'refcocog-google')


def _full(**kw) -> ModelExpectation:
    return ModelExpectation(size='full', **kw)


def _tiny(**kw) -> ModelExpectation:
    return ModelExpectation(size='tiny', **kw)


# yapf: disable
#: config path (relative to the repo root) -> what it builds.
MODEL_EXPECTATIONS = {
    # SERA, DINOv2-B
    'configs/sera/sera_dinov2-b_refcoco.py': _full(**_SERA),
    'configs/sera/sera_dinov2-b_refcoco+.py': _full(**_SERA),
    'configs/sera/sera_dinov2-b_refcocog-umd.py': _full(**_SERA, context_length=22),
    'configs/sera/sera_dinov2-b_refcocog-google.py': _full(**_SERA),
    'configs/mixed/sera_dinov2-b_refcoco-mixed.py': _full(**_SERA),
    'configs/cross_dataset/sera_dinov2-b_refcoco_cross-eval.py': _full(**_SERA),
    'configs/cross_dataset/sera_dinov2-b_refcoco+_cross-eval.py': _full(**_SERA),
    'configs/cross_dataset/sera_dinov2-b_refcocog-umd_cross-eval.py':
        _full(**_SERA, context_length=22),
    # SERA ablations, DINOv2-B: the paper's Top-k tables (k = 4 is the
    # paper config written out) and component table on each of its data sets
    **{f'configs/ablations/sera_dinov2-b_top{k}_{data}.py':
       _full(**dict(_SERA, top_k=k), context_length=22 if data == 'refcocog-umd' else 17)
       for data in _TOP_K_SETS for k in (1, 2, 3, 4)},
    **{f'configs/ablations/sera_dinov2-b_adapter-only_{data}.py':
       _full(variant='adapter-only', bitfit_ln=True) for data in _COMPONENT_SETS},
    # (DETRIS-B's model trained as SERA is: BitFit + LN)
    **{f'configs/ablations/sera_dinov2-b_baseline_{data}.py': _full(**_DETRIS, bitfit_ln=True)
       for data in _COMPONENT_SETS},
    # other options, RefCOCO
    'configs/ablations/sera_dinov2-b_dice_refcoco.py': _full(**_SERA, dice=True),
    'configs/ablations/sera_dinov2-b_from-detris_refcoco.py': _full(**_SERA),
    'configs/ablations/sera_dinov2-b_fusion-after-proj_refcoco.py':
        _full(**dict(_SERA, fusion_width='neck')),
    'configs/ablations/sera_dinov2-b_pad-mask_refcoco.py': _full(**_SERA, pad_mask=True),
    'configs/ablations/sera_dinov2-b_top2-random-init_refcoco.py':
        _full(**dict(_SERA, top_k=2, zero_init=False)),
    # DETRIS, DINOv2-B and -L
    'configs/detris/detris_dinov2-b_refcoco.py': _full(**_DETRIS),
    'configs/detris/detris_dinov2-b_refcoco+.py': _full(**_DETRIS),
    'configs/detris/detris_dinov2-b_refcocog-umd.py': _full(**_DETRIS, context_length=22),
    'configs/detris/detris_dinov2-b_refcocog-google.py': _full(**_DETRIS),
    'configs/detris/detris_dinov2-l_refcoco.py': _full(**_DETRIS),
    'configs/detris/detris_dinov2-l_refcoco+.py': _full(**_DETRIS),
    'configs/detris/detris_dinov2-l_refcocog-umd.py': _full(**_DETRIS, context_length=22),
    'configs/detris/detris_dinov2-l_refcocog-google.py': _full(**_DETRIS),
    'configs/detris/detris_dinov2-l_refcoco-mixed.py': _full(**_DETRIS),
    # GRES (gRefCOCO): a presence head, or the empty-mask rule without one
    'configs/gres/detris_dinov2-b_grefcoco.py': _full(**_DETRIS, presence=True),
    'configs/gres/detris_dinov2-b_grefcoco_empty-mask.py': _full(**_DETRIS, min_mask_pixels=64),
    'configs/gres/sera_dinov2-b_grefcoco.py': _full(**_SERA, presence=True),
    'configs/gres/sera-tiny_synthetic-gres.py':
        _tiny(**_SERA_TINY, presence=True, no_target_threshold=0.17),
    'configs/gres/sera-tiny_synthetic-gres_empty-mask.py':
        _tiny(**_SERA_TINY, min_mask_pixels=16, no_target_threshold=0.17),
    # the CPU toys
    'configs/synthetic/sera-tiny_synthetic.py': _tiny(**_SERA_TINY),
    'configs/synthetic/detris-tiny_synthetic.py': _tiny(**_DETRIS),
    'configs/synthetic/ablations/adapter-only-tiny_synthetic.py': _tiny(variant='adapter-only'),
    'configs/synthetic/ablations/sera-tiny_top1_synthetic.py': _tiny(**dict(_SERA_TINY, top_k=1)),
    'configs/synthetic/ablations/sera-tiny_top2_synthetic.py': _tiny(**_SERA_TINY),
    'configs/synthetic/ablations/sera-tiny_top2-random-init_synthetic.py':
        _tiny(**dict(_SERA_TINY, zero_init=False)),
    'configs/synthetic/ablations/sera-tiny_top3_synthetic.py': _tiny(**dict(_SERA_TINY, top_k=3)),
    'configs/synthetic/ablations/sera-tiny_top4_synthetic.py': _tiny(**dict(_SERA_TINY, top_k=4)),
    'configs/cross_dataset/sera-tiny_synthetic-full_cross-eval.py': _tiny(**_SERA_TINY),
    'configs/cross_dataset/sera-tiny_synthetic-no-position_cross-eval.py': _tiny(**_SERA_TINY),
}
# yapf: enable


def expected_configs(size: Optional[str] = None, variants: Tuple[str, ...] = ()) -> list:
    """The table's config paths, sorted; those of one ``size`` and of the
    given ``variants`` when asked."""
    return sorted(p for p, e in MODEL_EXPECTATIONS.items()
                  if (size is None or e.size == size) and (not variants or e.variant in variants))


class AblationExpectation(NamedTuple):
    """An ablation: its single parent and the leaf keys it changes."""
    parent: str
    #: ``(dotted key, parent value, child value)`` of every changed leaf,
    #: sorted by key, where the values are pinned; or the changed keys alone
    #: (``pinned=False``) where the value is a long one (a loss list, a path).
    diff: tuple
    pinned: bool = True


# yapf: disable
_SERA_B = 'configs/sera/sera_dinov2-b_refcoco.py'
_SERA_TINY = 'configs/synthetic/sera-tiny_synthetic.py'
_TOP_K = 'model.neck.fusion_cfg.router.top_k'
_ZERO_INIT = 'model.neck.fusion_cfg.zero_init_experts'

_ADAPTER_TYPE = 'model.backbone.adapter_cfg.type'
_MOE_LOSS = dict(type='MoERegularizationLoss', load='noisy_topk')


def _sera(data: str) -> str:
    return f'configs/sera/sera_dinov2-b_{data}.py'


#: ablation config path -> its parent and what it changes.
ABLATION_EXPECTATIONS = {
    # Top-k: k = 4 is the parent itself, the others change k alone
    **{f'configs/ablations/sera_dinov2-b_top{k}_{data}.py':
       AblationExpectation(_sera(data), ((_TOP_K, 4, k), ) if k != 4 else ())
       for data in _TOP_K_SETS for k in (1, 2, 3, 4)},
    # components: SERA -> + SERA-Adapter (no SERA-Fusion) -> baseline (no
    # SERA-Adapter, no MoE loss)
    **{f'configs/ablations/sera_dinov2-b_adapter-only_{data}.py':
       AblationExpectation(_sera(data), ('model.neck.fusion_cfg', ), pinned=False)
       for data in _COMPONENT_SETS},
    **{f'configs/ablations/sera_dinov2-b_baseline_{data}.py':
       AblationExpectation(f'configs/ablations/sera_dinov2-b_adapter-only_{data}.py',
                           ((_ADAPTER_TYPE, 'SERAAdapter', 'DenseAligner'),
                            ('model.moe_loss', _MOE_LOSS, None)))
       for data in _COMPONENT_SETS},
    'configs/ablations/sera_dinov2-b_dice_refcoco.py':
        AblationExpectation(_SERA_B, ('model.decode_head.loss_decode', ), pinned=False),
    'configs/ablations/sera_dinov2-b_from-detris_refcoco.py':
        AblationExpectation(_SERA_B, ('load_from', ), pinned=False),
    'configs/ablations/sera_dinov2-b_fusion-after-proj_refcoco.py':
        AblationExpectation(_SERA_B, (('model.neck.fusion_position', 'before_proj',
                                       'after_proj'), )),
    'configs/ablations/sera_dinov2-b_pad-mask_refcoco.py':
        AblationExpectation(_SERA_B, ('model.backbone.adapter_cfg.use_pad_mask', ),
                            pinned=False),
    'configs/ablations/sera_dinov2-b_top2-random-init_refcoco.py':
        AblationExpectation('configs/ablations/sera_dinov2-b_top2_refcoco.py',
                            ((_ZERO_INIT, True, False), )),
    'configs/synthetic/ablations/adapter-only-tiny_synthetic.py':
        AblationExpectation(_SERA_TINY, ('model.neck.fusion_cfg', ), pinned=False),
    'configs/synthetic/ablations/sera-tiny_top1_synthetic.py':
        AblationExpectation(_SERA_TINY, ((_TOP_K, 2, 1), )),
    'configs/synthetic/ablations/sera-tiny_top2_synthetic.py': AblationExpectation(_SERA_TINY, ()),
    'configs/synthetic/ablations/sera-tiny_top2-random-init_synthetic.py':
        AblationExpectation('configs/synthetic/ablations/sera-tiny_top2_synthetic.py',
                            ((_ZERO_INIT, True, False), )),
    'configs/synthetic/ablations/sera-tiny_top3_synthetic.py':
        AblationExpectation(_SERA_TINY, ((_TOP_K, 2, 3), )),
    'configs/synthetic/ablations/sera-tiny_top4_synthetic.py':
        AblationExpectation(_SERA_TINY, ((_TOP_K, 2, 4), )),
}

#: cross-dataset RefCOCO-family config -> the config it inherits (whose
#: model, data and schedule it keeps).
REFCOCO_CROSS_EXPECTATIONS = {
    'configs/cross_dataset/sera_dinov2-b_refcoco_cross-eval.py':
        'configs/sera/sera_dinov2-b_refcoco.py',
    'configs/cross_dataset/sera_dinov2-b_refcoco+_cross-eval.py':
        'configs/sera/sera_dinov2-b_refcoco+.py',
    'configs/cross_dataset/sera_dinov2-b_refcocog-umd_cross-eval.py':
        'configs/sera/sera_dinov2-b_refcocog-umd.py',
}

#: cross-dataset synthetic config -> whether its training sentences use
#: position words (the 'full' flavour does, 'no_position' does not).
SYNTHETIC_CROSS_EXPECTATIONS = {
    'configs/cross_dataset/sera-tiny_synthetic-full_cross-eval.py': True,
    'configs/cross_dataset/sera-tiny_synthetic-no-position_cross-eval.py': False,
}

#: mixed-data configs -> the context length of their text encoder; DETRIS's
#: mixed config uses 17.
MIXED_EXPECTATIONS = {
    'configs/mixed/sera_dinov2-b_refcoco-mixed.py': 17,
    'configs/detris/detris_dinov2-l_refcoco-mixed.py': 17,
}
# yapf: enable
