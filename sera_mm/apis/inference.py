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
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmseg.structures import SegDataSample

from sera_mm.engine.runner.checkpoint_match import check_state_dict_matches
from sera_mm.utils.checkpoint import load_error_summary
from sera_mm.utils.config import ConfigInput, leaf_datasets, load_config
from sera_mm.utils.pretrained import disable_pretrained

ImageInput = Union[str, Path, np.ndarray]


def load_referring_checkpoint(model: nn.Module, checkpoint: str,
                              strict: bool = True) -> dict:
    """Loads an mmengine checkpoint (or a bare state dict) into ``model``.

    Uses mmengine's :class:`CheckpointLoader` (local paths and URLs), whose
    loaders :func:`~sera_mm.utils.register_checkpoint_safe_globals` makes
    pass ``weights_only=True`` whatever the environment, with sera_mm's
    allow-list. mmengine's
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
        ValueError: The file is not a readable checkpoint.
        CheckpointMismatchError: ``strict`` and the weights do not fit.
    """
    from mmengine.runner import CheckpointLoader

    from sera_mm.utils import register_checkpoint_safe_globals
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
    ``LoadImageFromNDArray`` (the image is read by :func:`load_image`, so
    files and arrays take one path); ``LoadReferringMask`` is dropped (there
    is no annotation). Everything else (letterbox, tokenisation, packing) is
    the config's own.
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
               strict: bool = True) -> nn.Module:
    """Builds the model of a config, loads a checkpoint, readies inference.

    Args:
        config (str | Path | Config): Config file or object.
        checkpoint (str, optional): Checkpoint to load. Defaults to None
            (random weights, for tests).
        device (str): 'cpu', 'cuda' or 'cuda:N'. Defaults to 'cpu'.
        cfg_options (dict, optional): Overrides merged into the config.
        strict (bool): Refuse a checkpoint that does not fit. Defaults to
            True.

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

    Files are read with mmcv (``flag='color'``, OpenCV's IMREAD_COLOR, as
    ``LoadImageFromFile`` reads them in training): grayscale becomes three
    equal channels, an alpha channel is dropped. Arrays are taken as BGR(A)
    or grayscale (H x W or H x W x 1) and converted the same way.

    Raises:
        FileNotFoundError: No file at the path.
        ValueError: The file cannot be decoded, or the array is not an
            image (the message names the path or the shape).
    """
    if isinstance(image, (str, Path)):
        path = str(image)
        if not osp.isfile(path):
            raise FileNotFoundError(f'image not found: {path}')
        img = mmcv.imread(path, flag='color')
        if img is None:
            raise ValueError(f'cannot decode image: {path}')
        return img
    if not isinstance(image, np.ndarray):
        raise TypeError(f'image must be a path or a numpy array, got {type(image).__name__}')
    if image.dtype != np.uint8:
        raise ValueError(f'image array must be uint8, got {image.dtype}')
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return mmcv.gray2bgr(image)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[..., :3])
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f'image array must be H x W, H x W x 1, 3 or 4, got {image.shape}')


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
) -> Union[SegDataSample, List[SegDataSample]]:
    """Segments the object each sentence refers to in its image.

    Runs the config's test pipeline (letterbox, tokenisation, packing) and
    the model's ``test_step``; the model undoes the letterbox, so the masks
    have each image's own size.

    Args:
        model (nn.Module): From :func:`init_model`.
        image: A path or an array (see :func:`load_image`), or a list of
            them (one forward for the whole list).
        sentence: The referring sentence, or one per image.

    Returns:
        SegDataSample or list: ``pred_sem_seg`` (1 x H x W, 0/1 long) and
        ``seg_logits`` (1 x H x W float) at the image's size, plus the
        metainfo (``text``, ``ori_shape``, ``letterbox`` ...).
    """
    single = isinstance(image, (str, Path, np.ndarray))
    images = [image] if single else list(image)
    sentences = [sentence] if isinstance(sentence, str) else list(sentence)
    if len(images) != len(sentences):
        raise ValueError(f'{len(images)} images but {len(sentences)} sentences')
    pipeline = getattr(model, 'test_pipeline', None)
    if pipeline is None:
        pipeline = build_test_pipeline(model.cfg)
    batch = []
    for img, sent in zip(images, sentences):
        where = f'sentence for {img}' if isinstance(img, (str, Path)) else 'sentence'
        text = check_sentence(sent, where)
        data = pipeline(dict(img=load_image(img), text=text))
        if isinstance(img, (str, Path)):
            data['data_samples'].set_metainfo(dict(img_path=str(img)))
        batch.append(data)
    with torch.no_grad():
        results = model.test_step(pseudo_collate(batch))
    return results[0] if single else results
