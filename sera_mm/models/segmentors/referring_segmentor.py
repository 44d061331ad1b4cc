"""The referring segmentor: text encoder, backbone, neck, decoder, head."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from mmseg.structures import SegDataSample
from torch import Tensor

from sera_mm.models.utils import RoutingResult, TextFeatures
from sera_mm.registry import MODELS
from sera_mm.utils.letterbox import undo_letterbox

SampleList = List[SegDataSample]


def resolve_test_cfg(test_cfg: Optional[dict]) -> dict:
    """Fills in and checks the segmentor's ``test_cfg``; called in ``__init__``.

    Returns:
        dict: ``threshold``, ``upsample``, ``no_target_threshold`` (0.5) and
        ``min_mask_pixels`` (0) (see :class:`ReferringSegmentor`;
        ``align_corners`` defaults to False for the modes that take it and
        must be absent for the others).

    Raises:
        KeyError: For unknown keys, also inside ``upsample``.
        ValueError: For a bad threshold, mode, ``align_corners`` or pixel count.
    """
    cfg = dict(test_cfg or {})
    known = ['min_mask_pixels', 'no_target_threshold', 'threshold', 'upsample']
    unknown = set(cfg) - set(known)
    if unknown:
        raise KeyError(f'ReferringSegmentor: unknown test_cfg keys {sorted(unknown)}; '
                       f'known: {known}')
    threshold = cfg.get('threshold', 0.35)
    no_target_threshold = cfg.get('no_target_threshold', 0.5)
    for key, value in (('threshold', threshold), ('no_target_threshold', no_target_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f'ReferringSegmentor: test_cfg.{key} must be a number, '
                             f'got {value!r}')
    min_mask_pixels = cfg.get('min_mask_pixels', 0)
    if isinstance(min_mask_pixels, bool) or not isinstance(min_mask_pixels, int) \
            or min_mask_pixels < 0:
        raise ValueError('ReferringSegmentor: test_cfg.min_mask_pixels must be an int >= 0 '
                         f'(0: off), got {min_mask_pixels!r}')
    upsample = dict(cfg.get('upsample') or dict(mode='bilinear'))
    unknown = set(upsample) - {'mode', 'align_corners'}
    if unknown:
        raise KeyError(f'ReferringSegmentor: unknown test_cfg.upsample keys '
                       f"{sorted(unknown)}; known: ['align_corners', 'mode']")
    alignable, others = ('bilinear', 'bicubic'), ('nearest', 'nearest-exact', 'area')
    mode = upsample.get('mode', 'bilinear')
    if mode not in alignable + others:
        raise ValueError('ReferringSegmentor: test_cfg.upsample.mode must be one of '
                         f'{alignable + others}, got {mode!r}')
    if mode in alignable:
        upsample.setdefault('align_corners', False)
        if not isinstance(upsample['align_corners'], bool):
            raise ValueError('ReferringSegmentor: test_cfg.upsample.align_corners '
                             f"must be a bool, got {upsample['align_corners']!r}")
    elif 'align_corners' in upsample:
        raise ValueError('ReferringSegmentor: test_cfg.upsample.align_corners is '
                         f"only for modes {alignable}, not '{mode}'")
    return dict(threshold=float(threshold), upsample=dict(upsample, mode=mode),
                no_target_threshold=float(no_target_threshold),
                min_mask_pixels=min_mask_pixels)


def is_no_target(mask: Tensor, score: Optional[Tensor], test_cfg: dict) -> bool:
    """The "no target" rules (docs/en/method.md, s. 9); called by
    :meth:`ReferringSegmentor.postprocess_result` and by the inference API
    when it thresholds again.

    Args:
        mask (Tensor): The thresholded mask at the original size.
        score (Tensor, optional): The presence head's probability; None
            without a head.
        test_cfg (dict): ``no_target_threshold`` and ``min_mask_pixels``.

    Returns:
        bool: The probability exceeds ``no_target_threshold``, or ``mask``
        has fewer foreground pixels than ``min_mask_pixels``.
    """
    return (score is not None and float(score) > test_cfg.get('no_target_threshold', 0.5)) \
        or int(mask.sum()) < test_cfg.get('min_mask_pixels', 0)


@MODELS.register_module()
class ReferringSegmentor(BaseSegmentor):
    """Segments the object a sentence refers to (docs/en/method.md, s. 1-6).

    The text encoder tokenises and encodes each sample's ``text`` (metainfo);
    the backbone (whose SERA-Adapters read the text) encodes the image; the
    neck fuses the levels and gates them with the sentence, the decoder lets
    pixels attend to words, and the head predicts 1-channel mask logits at
    4x the patch grid. What the routers chose comes out with the results,
    never kept on the model (requests may run concurrently).

    Args:
        text_encoder (dict): Config; ``tokenize(sentences)`` gives B x L ids,
            ``forward(tokens)`` :class:`TextFeatures`.
        backbone (dict): Config; ``forward(inputs, text)`` returns a tuple of
            B x D x h x w maps and its adapters' routing results by block.
        neck (dict): Config; ``forward(feats, text)`` returns
            ``(B x C x h x w, list of RoutingResult)``.
        decoder (dict): Config; ``forward(x, text)`` keeps the shape.
        decode_head (dict): Config; ``forward(x, text)`` returns
            B x 1 x H' x W' logits, ``loss(x, text, gt_masks)`` a loss dict.
        moe_loss (dict, optional): MoE regularisation of the neck's routing
            results, when there are any. Defaults to None.
        presence_head (dict, optional): Config of a head whose
            ``forward(x, text)`` gives B "no target" logits from the decoder
            output and ``loss(x, text, no_target)`` a loss dict, trained on
            the samples' ``no_target`` metainfo (absent: False); see
            :meth:`postprocess_result` for its use. Defaults to None: no
            head, no ``no_target_score`` (docs/en/method.md, s. 9).
        data_preprocessor (dict, optional): Data preprocessor config.
        train_cfg (dict, optional): Unused; kept for mmseg's interface.
        test_cfg (dict, optional): ``threshold`` on the sigmoid and
            ``upsample``, the ``F.interpolate`` options of the resize of the
            probabilities to the input size; the "no target" rules of
            :meth:`postprocess_result`: ``no_target_threshold`` on the
            presence head's probability and ``min_mask_pixels``. Defaults to
            None: ``dict(threshold=0.35, upsample=dict(mode='bilinear',
            align_corners=False), no_target_threshold=0.5,
            min_mask_pixels=0)``; DETRIS's protocol is ``upsample=
            dict(mode='bicubic', align_corners=True)`` with
            ``Letterbox(mode='affine')``.
        init_cfg (dict or list[dict], optional): Applied to every part
            before each part's own ``init_weights``, so pretrained weights,
            zero initialisations and fixed kernels hold. Defaults to None.
    """

    def __init__(self,
                 text_encoder: dict,
                 backbone: dict,
                 neck: dict,
                 decoder: dict,
                 decode_head: dict,
                 moe_loss: Optional[dict] = None,
                 presence_head: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.text_encoder = MODELS.build(text_encoder)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)
        self.decoder = MODELS.build(decoder)
        self.decode_head = MODELS.build(decode_head)
        self.moe_loss = MODELS.build(moe_loss) if moe_loss is not None else None
        self.presence_head = None if presence_head is None else MODELS.build(presence_head)
        self.train_cfg = train_cfg
        self.test_cfg = resolve_test_cfg(test_cfg)
        # The fallback resize to ``ori_shape`` (no letterbox meta) is
        # bilinear with half-pixel centres, as undo_letterbox's 'resize'.
        self.align_corners = False

    def encode_text(self, data_samples: SampleList) -> TextFeatures:
        """Tokenises each sample's sentence (metainfo ``text``) with the text
        encoder and encodes them; called once per forward, in every mode."""
        missing = [i for i, ds in enumerate(data_samples) if 'text' not in ds.metainfo]
        if missing:
            raise KeyError(f'ReferringSegmentor: data samples {missing} have no `text` '
                           'metainfo (the sentence); pack it with PackReferringInputs, '
                           "whose meta_keys include 'text'")
        tokens = self.text_encoder.tokenize([ds.text for ds in data_samples])
        return self.text_encoder(tokens)

    def extract_feat(self, inputs: Tensor,
                     text: TextFeatures) -> Tuple[Tensor, Dict[str, RoutingResult]]:
        """Backbone, neck and decoder; called once per forward.

        Returns:
            tuple: The decoder output (B x C x h x w) and every router's
            result, named as in :meth:`router_experts`.
        """
        levels, adapter_routings = self.backbone(inputs, text)
        x, fusion_routings = self.neck(levels, text)
        routings = {f'fusion.level{i}': r for i, r in enumerate(fusion_routings)}
        routings.update((f'backbone.adapters.{k}', r) for k, r in adapter_routings.items())
        return self.decoder(x, text), routings

    def router_experts(self) -> Dict[str, Tuple[str, ...]]:
        """The expert names of each router, by the name its routing has in
        the outputs: ``fusion.level<i>`` per SERA-Fusion level, then
        ``backbone.adapters.<block>`` per SERA-Adapter; empty for DETRIS."""
        experts = {f'fusion.level{i}': tuple(f.expert_names)
                   for i, f in enumerate(getattr(self.neck, 'fusions', None) or [])}
        experts.update((f'backbone.adapters.{k}', tuple(a.expert_names))
                       for k, a in getattr(self.backbone, 'adapters', {}).items()
                       if hasattr(a, 'expert_names'))
        return experts

    def encode_decode(self, inputs: Tensor, batch_data_samples: SampleList) -> Tensor:
        """mmseg's interface: float32 mask logits resized to the input size
        with ``test_cfg['upsample']``, B x 1 x H x W."""
        logits = self._forward(inputs, batch_data_samples).float()
        return F.interpolate(logits, tuple(inputs.shape[-2:]), **self.test_cfg['upsample'])

    def _forward(self, inputs: Tensor, data_samples: Optional[SampleList] = None) -> Tensor:
        """Tensor mode: mask logits at the head's resolution, B x 1 x H' x W'."""
        if data_samples is None:
            raise ValueError('ReferringSegmentor: data_samples with the sentence '
                             '(`text` metainfo) are needed in every mode')
        text = self.encode_text(data_samples)
        x, _ = self.extract_feat(inputs, text)
        return self.decode_head(x, text)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        """Loss mode: the heads' losses plus the MoE regularisation.

        Args:
            inputs (Tensor): B x 3 x H x W normalised images.
            data_samples (list[SegDataSample]): With ``text`` (metainfo)
                and ``gt_sem_seg`` (1 x H x W, at the input size); with a
                presence head also ``no_target`` (metainfo, absent: False).

        Returns:
            dict[str, Tensor]: Losses (keys ``loss_*``) and logged statistics,
            among them, per router and expert, the share of the batch routed
            to it and its mean weight (``routing/<router>.<expert>.freq`` and
            ``.weight``, detached).
        """
        text = self.encode_text(data_samples)
        x, routings = self.extract_feat(inputs, text)
        gt_masks = torch.stack([ds.gt_sem_seg.data for ds in data_samples])
        losses = dict(self.decode_head.loss(x, text, gt_masks))
        if self.presence_head is not None:
            no_target = [bool(ds.metainfo.get('no_target', False)) for ds in data_samples]
            losses.update(self.presence_head.loss(
                x, text, torch.tensor(no_target, device=x.device)))
        fusion = [r for name, r in routings.items() if name.startswith('fusion.')]
        if self.moe_loss is not None and fusion:
            losses.update(self.moe_loss(fusion))
        experts = self.router_experts()
        for name, routing in routings.items():
            weights = routing.weights.detach().float()
            freq, mean = (weights > 0).float().mean(0), weights.mean(0)
            for e, expert in enumerate(experts[name]):
                losses[f'routing/{name}.{expert}.freq'] = freq[e]
                losses[f'routing/{name}.{expert}.weight'] = mean[e]
        return losses

    def predict(self, inputs: Tensor, data_samples: SampleList) -> SampleList:
        """Predict mode: fills ``seg_logits``, ``pred_sem_seg`` and, with
        routers, ``routing``, with a presence head ``no_target_score``, per
        sample (see :meth:`postprocess_result`)."""
        text = self.encode_text(data_samples)
        x, routings = self.extract_feat(inputs, text)
        no_target = None if self.presence_head is None else self.presence_head(x, text)
        return self.postprocess_result(self.decode_head(x, text), data_samples,
                                       inputs.shape[-2:], routings, no_target)

    def postprocess_result(self, seg_logits: Tensor, data_samples: SampleList,
                           input_shape: Optional[Sequence[int]] = None,
                           routings: Optional[Dict[str, RoutingResult]] = None,
                           no_target_logits: Optional[Tensor] = None) -> SampleList:
        """Maps the head's logits to masks at each original image size.

        Called by :meth:`predict`. Per docs/en/method.md, s. 6: sigmoid;
        resize to the input size with ``test_cfg['upsample']``; crop the
        data preprocessor's ``padding_size``; undo the ``letterbox`` meta
        (:func:`undo_letterbox`) or, without one, resize (bilinear) to
        ``ori_shape``; threshold (``prob > test_cfg['threshold']``).

        ``seg_logits`` stores the logit of the probabilities clamped to
        [1e-6, 1 - 1e-6] (bicubic resampling can overshoot [0, 1]);
        ``pred_sem_seg`` is taken from the unclamped probabilities.

        "No target" (gRefCOCO): a sample whose presence probability
        (sigmoid of ``no_target_logits``) exceeds
        ``test_cfg['no_target_threshold']``, or whose ``pred_sem_seg`` at the
        original size (the mask the metric scores) has fewer than
        ``test_cfg['min_mask_pixels']`` foreground pixels, gets an all-zero
        ``pred_sem_seg`` and the probability 1e-6 everywhere in
        ``seg_logits`` (a later threshold of them, from 1e-6 up, keeps it
        empty).

        Args:
            seg_logits (Tensor): B x 1 x H' x W' mask logits.
            data_samples (list[SegDataSample]): One per image; updated in
                place.
            input_shape (Sequence[int], optional): The batch input size
                H x W. Defaults to the logits' size.
            routings (dict[str, RoutingResult], optional): The batch's
                routing results (:meth:`extract_feat`). Defaults to None.
            no_target_logits (Tensor, optional): B logits of the presence
                head. Defaults to None (no head).

        Returns:
            list[SegDataSample]: ``data_samples``, each with ``seg_logits``
            (float) and ``pred_sem_seg`` (long, 0/1), both 1 x h0 x w0,
            given ``routings``, ``routing``: its own row of each router's
            result (detached), by router name, and, given
            ``no_target_logits``, ``no_target_score``: the presence
            probability, a 0-d float tensor.
        """
        probs = seg_logits.float().sigmoid()
        if input_shape is not None and probs.shape[-2:] != tuple(input_shape):
            probs = F.interpolate(probs, tuple(input_shape), **self.test_cfg['upsample'])
        height, width = probs.shape[-2:]
        for i, (prob, data_sample) in enumerate(zip(probs, data_samples)):
            meta = data_sample.metainfo
            pad_left, pad_right, pad_top, pad_bottom = meta.get('padding_size', (0, 0, 0, 0))
            prob = prob[:, pad_top:height - pad_bottom, pad_left:width - pad_right]
            if 'letterbox' in meta:
                prob = undo_letterbox(prob, meta['letterbox'])
            elif prob.shape[-2:] != tuple(meta['ori_shape']):
                prob = F.interpolate(prob[None], tuple(meta['ori_shape']), mode='bilinear',
                                     align_corners=self.align_corners)[0]
            mask = prob > self.test_cfg['threshold']
            score = None
            if no_target_logits is not None:
                score = no_target_logits[i].detach().float().sigmoid()
                data_sample.set_data(dict(no_target_score=score))
            if is_no_target(mask, score, self.test_cfg):
                prob, mask = torch.zeros_like(prob), torch.zeros_like(mask)
            data_sample.set_data(dict(
                seg_logits=PixelData(data=torch.logit(prob, eps=1e-6)),
                pred_sem_seg=PixelData(data=mask.long())))
            if routings:
                data_sample.routing = {
                    name: RoutingResult(*(None if t is None else t[i].detach() for t in r))
                    for name, r in routings.items()}
        return data_samples
