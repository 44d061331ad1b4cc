"""Inference on images and sentences: a model from a config and a checkpoint,
the config's test pipeline, masks at each image's own size.

Example::

    from sera_mm.apis import inference_referring, init_model
    model = init_model('configs/synthetic/sera-tiny_synthetic.py',
                       'work_dirs/demo/epoch_6.pth', device='cpu')
    result = inference_referring(model, 'demo.jpg', 'the red circle')
    mask = result.pred_sem_seg.data[0].bool()     # H x W, the image's size
"""
import copy
import os.path as osp
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import mmcv
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from sera_mm.engine.runner.checkpoint_match import check_state_dict_matches
from sera_mm.models.segmentors.referring_segmentor import is_no_target
from sera_mm.utils.checkpoint import load_error_summary
from sera_mm.utils.config import ConfigInput, leaf_datasets, load_config
from sera_mm.utils.pretrained import disable_pretrained
from .photo import PHOTO_MAX_SIDE, flatten_alpha, read_photo, shrink_for_model
from .routing import sample_routing

ImageInput = Union[str, Path, np.ndarray]


def load_referring_checkpoint(model: nn.Module, checkpoint: str,
                              strict: bool = True) -> dict:
    """Loads an mmengine checkpoint (or a bare state dict) into ``model``.

    Reads with mmengine's :class:`CheckpointLoader` (paths and URLs,
    weights-only: :mod:`sera_mm.utils.checkpoint`); a light checkpoint's
    frozen weights are rebuilt from their files
    (:func:`~sera_mm.utils.light_checkpoint.restore_frozen`). mmengine's
    ``load_checkpoint`` only warns on a mismatch; a demo must refuse, so the
    keys and shapes are compared first
    (:func:`~sera_mm.engine.runner.check_state_dict_matches`).

    Args:
        model (nn.Module): The model the config built.
        checkpoint (str): Path of the checkpoint.
        strict (bool): Refuse a checkpoint whose keys or shapes differ from
            the model's. Defaults to True.

    Returns:
        dict: The checkpoint's ``meta`` (empty when it has none).

    Raises:
        FileNotFoundError: No file at ``checkpoint``.
        ValueError: The file is not a readable checkpoint, or a light
            checkpoint's frozen-weight file changed (named).
        CheckpointMismatchError: ``strict`` and the weights do not fit.
    """
    from mmengine.runner import CheckpointLoader

    from sera_mm.utils import register_checkpoint_safe_globals
    from sera_mm.utils.light_checkpoint import restore_frozen
    register_checkpoint_safe_globals()  # also when called without init_model
    if '://' not in str(checkpoint) and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    try:
        ckpt = CheckpointLoader.load_checkpoint(str(checkpoint), map_location='cpu')
    except Exception as e:  # torch raises several types for a bad file
        raise ValueError(f'cannot read checkpoint {checkpoint}: {load_error_summary(e)}') from e
    if not isinstance(ckpt, dict):
        raise ValueError(f'checkpoint {checkpoint} holds a {type(ckpt).__name__}, '
                         'not a dict of weights')
    restore_frozen(ckpt, model)  # a light checkpoint's frozen weights, from their files
    state_dict = ckpt.get('state_dict', ckpt)
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                  for k, v in state_dict.items()}
    if strict:
        check_state_dict_matches(
            model, {k: tuple(v.shape) for k, v in state_dict.items() if hasattr(v, 'shape')},
            f'checkpoint {checkpoint}')
    model.load_state_dict(state_dict, strict=strict)
    meta = ckpt.get('meta') or {}
    return meta if isinstance(meta, dict) else {}


def build_test_pipeline(cfg: Config) -> Compose:
    """The config's test pipeline, turned to inference on in-memory images.

    Taken from ``test_dataloader.dataset.pipeline`` (``test_pipeline`` when
    there is no test dataloader). ``LoadImageFromFile`` becomes mmseg's
    ``LoadImageFromNDArray`` (:func:`load_image` reads files and arrays
    alike) and ``LoadReferringMask`` is dropped (there is no annotation);
    the rest (letterbox, packing) is the config's own.
    """
    dataset = (cfg.get('test_dataloader') or {}).get('dataset')
    pipeline = dataset.get('pipeline') if isinstance(dataset, dict) else None
    if pipeline is None:
        pipeline = next(leaf_datasets(dataset), {}).get('pipeline')
    if pipeline is None:
        pipeline = cfg.get('test_pipeline')
    if not pipeline:
        raise KeyError(f'config {cfg.filename}: no test_dataloader.dataset.pipeline '
                       'nor test_pipeline to run inference with')
    steps = []
    for step in copy.deepcopy(list(pipeline)):
        kind = str(step.get('type', '')).split('.')[-1]
        if kind == 'LoadReferringMask':
            continue
        if kind == 'LoadImageFromFile':
            step = dict(type='mmseg.LoadImageFromNDArray')
        steps.append(step)
    init_default_scope(cfg.get('default_scope') or 'sera_mm')
    return Compose(steps)


def init_model(config: ConfigInput,
               checkpoint: Optional[str] = None,
               device: str = 'cpu',
               cfg_options: Optional[dict] = None,
               strict: bool = True,
               backend: str = 'pytorch') -> nn.Module:
    """Builds the model of a config, loads a checkpoint, readies inference.

    Args:
        config (str | Path | Config): Config file or object.
        checkpoint (str, optional): Checkpoint to load. Defaults to None
            (random weights, for tests).
        device (str): 'cpu', 'cuda' or 'cuda:N'. Defaults to 'cpu'.
        cfg_options (dict, optional): Overrides merged into the config.
        strict (bool): Refuse a checkpoint that does not fit. Defaults to
            True.
        backend (str): 'pytorch', or 'onnxruntime': ``checkpoint`` is then
            the file tools/deployment/export_onnx.py exported from the config
            (:class:`~.onnxruntime_backend.ONNXReferringSegmentor`).
            Defaults to 'pytorch'.

    Returns:
        nn.Module: The model in eval mode on ``device``, with ``cfg`` (the
        config) and ``test_pipeline`` (see :func:`build_test_pipeline`).

    Raises:
        FileNotFoundError, ValueError, CheckpointMismatchError: A missing or
            unfit input; the message names it.
        RuntimeError: ``device`` is CUDA and CUDA is not available.
    """
    from sera_mm import register_all_modules
    from sera_mm.registry import MODELS

    register_all_modules(init_default_scope=False)
    cfg = load_config(config, cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'config {cfg.filename} has no `model`')
    if str(device).startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' requested but CUDA is not available")
    init_default_scope(cfg.get('default_scope') or 'sera_mm')
    if backend not in ('pytorch', 'onnxruntime'):
        raise ValueError(f"backend must be 'pytorch' or 'onnxruntime', got {backend!r}")
    if backend == 'onnxruntime':
        if checkpoint is None or not osp.isfile(checkpoint):
            raise FileNotFoundError(f'ONNX model not found: {checkpoint}')
        from .onnxruntime_backend import ONNXReferringSegmentor
        model = ONNXReferringSegmentor(checkpoint, cfg, device)
        model.cfg, model.test_pipeline = cfg, build_test_pipeline(cfg)
        return model.to(device).eval()
    # The checkpoint holds every weight: the pretrained files are not read
    # (they need not be on the user's disk).
    model_cfg = copy.deepcopy(cfg.model)
    disable_pretrained(model_cfg)
    model_cfg.pop('train_cfg', None)
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        meta = load_referring_checkpoint(model, checkpoint, strict=strict)
        if 'dataset_meta' in meta:
            model.dataset_meta = meta['dataset_meta']
    model.cfg = cfg
    model.test_pipeline = build_test_pipeline(cfg)
    model.to(device)
    model.eval()
    return model


def load_image(image: ImageInput) -> np.ndarray:
    """Reads an image as H x W x 3 uint8 BGR, the order of the pipeline.

    Files are read as a photo viewer shows them (:func:`~.photo.read_photo`).
    Arrays are taken as BGR, BGRA (flattened over white, as photos are) or
    grayscale (H x W or H x W x 1, made three equal channels).

    Raises:
        FileNotFoundError: No file at the path.
        ValueError: The file cannot be decoded, or the array is not an
            image (the message names the path or the shape).
    """
    if isinstance(image, (str, Path)):
        path = str(image)
        if not osp.isfile(path):
            raise FileNotFoundError(f'image not found: {path}')
        return read_photo(path)
    if not isinstance(image, np.ndarray):
        raise TypeError(f'image must be a path or a numpy array, got {type(image).__name__}')
    if image.dtype != np.uint8:
        raise ValueError(f'image array must be uint8, got {image.dtype}')
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return mmcv.gray2bgr(image)
    if image.ndim == 3 and image.shape[2] == 4:
        return flatten_alpha(image[..., :3], image[..., 3])
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f'image array must be H x W, H x W x 1, 3 or 4, got {image.shape}')


def default_threshold(model: nn.Module) -> float:
    """The threshold on the mask probability the model predicts with: its
    ``test_cfg.threshold``, else the segmentor's default, 0.35."""
    test_cfg = getattr(getattr(model, 'module', model), 'test_cfg', None) or {}
    return float(test_cfg.get('threshold', 0.35))


def check_sentence(sentence: Any, where: str = 'sentence') -> str:
    """Returns the sentence stripped; raises ValueError naming ``where`` if
    it is not a non-empty string."""
    if not isinstance(sentence, str):
        raise TypeError(f'{where}: must be a str, got {type(sentence).__name__}')
    sentence = sentence.strip()
    if not sentence:
        raise ValueError(f'{where}: empty sentence')
    return sentence


def inference_referring(
        model: nn.Module,
        image: Union[ImageInput, Sequence[ImageInput]],
        sentence: Union[str, Sequence[str]],
        threshold: Optional[float] = None,
        max_side: Optional[int] = PHOTO_MAX_SIDE,
        return_routing: bool = False,
) -> Union[SegDataSample, List[SegDataSample]]:
    """Segments the object each sentence refers to in its image.

    Runs the config's test pipeline and the model's ``test_step``, which
    undoes the letterbox: the masks have each image's own size (for a file,
    the size a photo viewer shows). An image whose longer side exceeds
    ``max_side`` is shrunk first (:func:`~.photo.shrink_for_model`) and the
    probabilities are resized back (bilinear) before the threshold;
    ``metainfo['model_shape']`` then holds the size the model read.

    Args:
        model (nn.Module): From :func:`init_model`.
        image: A path or an array (see :func:`load_image`), or a list of
            them (one forward for the whole list).
        sentence: The referring sentence, or one per image.
        threshold (float, optional): Threshold of ``pred_sem_seg`` on the
            mask probability. Defaults to None: the model's own
            (:func:`default_threshold`).
        max_side (int, optional): Longest side the model reads. Defaults to
            :data:`~.photo.PHOTO_MAX_SIDE`; None reads every image at full
            size.
        return_routing (bool): Add ``routing`` to each result, what the
            SERA routers chose (:func:`~.routing.sample_routing`; None
            without routers). Defaults to False.

    Returns:
        SegDataSample or list: ``pred_sem_seg`` (1 x H x W, 0/1 long) and
        ``seg_logits`` (1 x H x W float) at the image's size, plus the
        metainfo (``text``, ``ori_shape``, ``letterbox`` ...). A model with
        a presence head (``model.presence_head``, docs/en/method.md, s. 9)
        adds ``no_target_score``, the probability that the sentence names
        nothing in the image (0-d float tensor; ``float(result.no_target_score)``);
        a "no target" prediction is an all-zero ``pred_sem_seg``, and it
        stays empty through the resize of a shrunk photo and any
        ``threshold`` (the model's rules are applied again). Without a head there is no
        ``no_target_score`` (``'no_target_score' in result`` is False).
    """
    single = isinstance(image, (str, Path, np.ndarray))
    images = [image] if single else list(image)
    sentences = [sentence] if isinstance(sentence, str) else list(sentence)
    if len(images) != len(sentences):
        raise ValueError(f'{len(images)} images but {len(sentences)} sentences')
    if threshold is not None and (isinstance(threshold, bool) or
                                  not isinstance(threshold, (int, float)) or
                                  not 0.0 <= threshold <= 1.0):
        raise ValueError(f'threshold must be a number in [0, 1], got {threshold!r}')
    pipeline = getattr(model, 'test_pipeline', None)
    if pipeline is None:
        pipeline = build_test_pipeline(model.cfg)
    batch, full_shapes = [], []
    for img, sent in zip(images, sentences):
        where = f'sentence for {img}' if isinstance(img, (str, Path)) else 'sentence'
        text = check_sentence(sent, where)
        full = load_image(img)
        seen, shrunk = shrink_for_model(full, max_side)
        full_shapes.append(full.shape[:2] if shrunk else None)
        data = pipeline(dict(img=seen, text=text))
        if isinstance(img, (str, Path)):
            data['data_samples'].set_metainfo(dict(img_path=str(img)))
        batch.append(data)
    with torch.no_grad():
        results = model.test_step(pseudo_collate(batch))
        for result in results:  # the model's routing field, as plain values or not at all
            routing = result.pop('routing', None)
            if return_routing:
                result.set_field(sample_routing(model, routing), 'routing', field_type='data')
        thr = default_threshold(model) if threshold is None else float(threshold)
        test_cfg = getattr(getattr(model, 'module', model), 'test_cfg', None) or {}
        for result, full_shape in zip(results, full_shapes):
            if full_shape is not None:
                _to_full_size(result, tuple(full_shape), thr, test_cfg)
            elif threshold is not None:
                prob = result.seg_logits.data.float().sigmoid()
                result.pred_sem_seg.data = _mask(result, prob, thr, test_cfg)
    return results[0] if single else results


def _mask(result: SegDataSample, prob: Tensor, threshold: float, test_cfg: dict) -> Tensor:
    """``prob > threshold``, empty when the model's "no target" rules hold
    (:func:`~sera_mm.models.segmentors.referring_segmentor.is_no_target`)."""
    mask = (prob > threshold).long()
    if is_no_target(mask, result.get('no_target_score'), test_cfg):
        mask.zero_()
    return mask


def _to_full_size(result: SegDataSample, shape: tuple, threshold: float,
                  test_cfg: dict) -> None:
    """Resizes a shrunk image's prediction to the photo's ``shape``: the
    probabilities, bilinear (as the letterbox is undone), then the
    threshold and the "no target" rules (:func:`_mask`)."""
    prob = result.seg_logits.data.float().sigmoid()
    model_shape = tuple(prob.shape[-2:])
    prob = F.interpolate(prob[None], shape, mode='bilinear', align_corners=False)[0]
    result.seg_logits = PixelData(data=torch.logit(prob, eps=1e-6))
    result.pred_sem_seg = PixelData(data=_mask(result, prob, threshold, test_cfg))
    result.set_metainfo(dict(ori_shape=shape, model_shape=model_shape))
