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
    #: Tokens the text encoder (and every TokenizeText) takes.
    context_length: int = 17
    #: Whether the head has a Dice loss term.
    dice: bool = False


_SERA = dict(variant='sera', top_k=2, zero_init=True, fusion_width='backbone')
_DETRIS = dict(variant='detris')


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
    # SERA ablations, DINOv2-B
    'configs/ablations/sera_dinov2-b_adapter-only_refcoco.py': _full(variant='adapter-only'),
    'configs/ablations/sera_dinov2-b_dice_refcoco.py': _full(**_SERA, dice=True),
    'configs/ablations/sera_dinov2-b_from-detris_refcoco.py': _full(**_SERA),
    'configs/ablations/sera_dinov2-b_fusion-after-proj_refcoco.py':
        _full(**dict(_SERA, fusion_width='neck')),
    'configs/ablations/sera_dinov2-b_pad-mask_refcoco.py': _full(**_SERA, pad_mask=True),
    'configs/ablations/sera_dinov2-b_top1_refcoco.py': _full(**dict(_SERA, top_k=1)),
    'configs/ablations/sera_dinov2-b_top2_refcoco.py': _full(**_SERA),
    'configs/ablations/sera_dinov2-b_top2-random-init_refcoco.py':
        _full(**dict(_SERA, zero_init=False)),
    'configs/ablations/sera_dinov2-b_top3_refcoco.py': _full(**dict(_SERA, top_k=3)),
    'configs/ablations/sera_dinov2-b_top4_refcoco.py': _full(**dict(_SERA, top_k=4)),
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
    # the CPU toys
    'configs/synthetic/sera-tiny_synthetic.py': _tiny(**_SERA),
    'configs/synthetic/detris-tiny_synthetic.py': _tiny(**_DETRIS),
    'configs/synthetic/ablations/adapter-only-tiny_synthetic.py': _tiny(variant='adapter-only'),
    'configs/synthetic/ablations/sera-tiny_top1_synthetic.py': _tiny(**dict(_SERA, top_k=1)),
    'configs/synthetic/ablations/sera-tiny_top2_synthetic.py': _tiny(**_SERA),
    'configs/synthetic/ablations/sera-tiny_top2-random-init_synthetic.py':
        _tiny(**dict(_SERA, zero_init=False)),
    'configs/synthetic/ablations/sera-tiny_top3_synthetic.py': _tiny(**dict(_SERA, top_k=3)),
    'configs/synthetic/ablations/sera-tiny_top4_synthetic.py': _tiny(**dict(_SERA, top_k=4)),
    'configs/cross_dataset/sera-tiny_synthetic-full_cross-eval.py': _tiny(**_SERA),
    'configs/cross_dataset/sera-tiny_synthetic-no-position_cross-eval.py': _tiny(**_SERA),
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

#: ablation config path -> its parent and what it changes.
ABLATION_EXPECTATIONS = {
    'configs/ablations/sera_dinov2-b_adapter-only_refcoco.py':
        AblationExpectation(_SERA_B, ('model.neck.fusion_cfg', ), pinned=False),
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
    'configs/ablations/sera_dinov2-b_top1_refcoco.py':
        AblationExpectation(_SERA_B, ((_TOP_K, 2, 1), )),
    # top-2 is the parent itself
    'configs/ablations/sera_dinov2-b_top2_refcoco.py': AblationExpectation(_SERA_B, ()),
    'configs/ablations/sera_dinov2-b_top2-random-init_refcoco.py':
        AblationExpectation('configs/ablations/sera_dinov2-b_top2_refcoco.py',
                            ((_ZERO_INIT, True, False), )),
    'configs/ablations/sera_dinov2-b_top3_refcoco.py':
        AblationExpectation(_SERA_B, ((_TOP_K, 2, 3), )),
    'configs/ablations/sera_dinov2-b_top4_refcoco.py':
        AblationExpectation(_SERA_B, ((_TOP_K, 2, 4), )),
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

#: mixed-data configs -> the context length of their text encoder (and of
#: every TokenizeText); DETRIS's mixed config uses 17.
MIXED_EXPECTATIONS = {
    'configs/mixed/sera_dinov2-b_refcoco-mixed.py': 17,
    'configs/detris/detris_dinov2-l_refcoco-mixed.py': 17,
}
# yapf: enable
