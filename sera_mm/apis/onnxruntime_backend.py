"""A model exported by tools/deployment/export_onnx.py, run by ONNX Runtime
behind the inference API (``init_model(..., backend='onnxruntime')``).

The graph takes the normalised letterboxed images and the token ids; the
config's test pipeline, its data preprocessor, the text encoder's tokeniser
and :meth:`ReferringSegmentor.postprocess_result` do the rest, as for the
PyTorch model (docs/en/deployment.md).
"""
import json
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
from torch import Tensor

from sera_mm.models.segmentors.referring_segmentor import ReferringSegmentor, resolve_test_cfg
from sera_mm.models.text_encoders.clip_tokenizer import CLIPTokenizer
from sera_mm.models.utils import RoutingResult

#: Metadata key of the exported file: the expert names of each router, a
#: JSON list of ``[router name, [expert names]]`` in the outputs' order.
ROUTERS_KEY = 'sera_mm.routers'
#: Output names: the mask logits, the presence head's "no target" logits
#: (B, models with ``presence_head`` only), then ``routing.<router>.<field>``
#: for the fields of each router's :class:`RoutingResult` (``indices`` for
#: Top-k only).
LOGITS = 'mask_logits'
NO_TARGET = 'no_target_logits'
ROUTING_FIELDS = ('logits', 'weights', 'indices')


class ONNXReferringSegmentor(ReferringSegmentor):
    """A :class:`ReferringSegmentor` whose network is an ONNX Runtime session.

    Only the data preprocessor and ``test_cfg`` are built from the config;
    ``predict`` (reached through ``test_step``) tokenises the sentences,
    runs the session and post-processes with the inherited
    :meth:`postprocess_result`. Training modes are not available.

    Args:
        onnx_file (str): The exported model.
        cfg (Config): The config it was exported from.
        device (str): 'cpu' (CPU provider) or 'cuda[:N]' (needs
            onnxruntime-gpu). Defaults to 'cpu'.
        threads (int, optional): ONNX Runtime's intra-op threads. Defaults
            to None: torch's (``torch.get_num_threads()``).
    """

    def __init__(self, onnx_file: str, cfg: Config, device: str = 'cpu',
                 threads: Optional[int] = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError("backend='onnxruntime' needs onnxruntime: pip install -e "
                              '".[deploy]" (requirements/deploy.txt)') from e
        super(ReferringSegmentor, self).__init__(
            data_preprocessor=cfg.model.get('data_preprocessor'))
        self.test_cfg = resolve_test_cfg(cfg.model.get('test_cfg'))
        self.align_corners = False
        provider = 'CUDAExecutionProvider' if str(device).startswith('cuda') \
            else 'CPUExecutionProvider'
        if provider not in ort.get_available_providers():
            raise RuntimeError(f"device '{device}': onnxruntime has no {provider} here "
                               f'(available: {ort.get_available_providers()})')
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(onnx_file), options, providers=[provider])
        except Exception as e:  # onnxruntime raises its own types for missing or bad files
            raise ValueError(f'cannot load ONNX model {onnx_file}: {e}') from e
        meta = self.session.get_modelmeta().custom_metadata_map
        if ROUTERS_KEY not in meta:
            raise ValueError(f'{onnx_file} has no {ROUTERS_KEY!r} metadata: export it with '
                             'tools/deployment/export_onnx.py')
        self.onnx_file = str(onnx_file)
        self._experts = {name: tuple(experts) for name, experts in json.loads(meta[ROUTERS_KEY])}
        image, tokens = self.session.get_inputs()
        self.image_shape = tuple(image.shape[-2:])
        self.batch_size = image.shape[0] if isinstance(image.shape[0], int) else None
        self.tokenizer = CLIPTokenizer(tokens.shape[1])

    def router_experts(self) -> Dict[str, Tuple[str, ...]]:
        """The expert names of each router, as the exported model's metadata
        holds them; empty for DETRIS."""
        return dict(self._experts)

    def run(self, inputs: Tensor, texts: List[str]
            ) -> Tuple[Tensor, Dict[str, RoutingResult], Optional[Tensor]]:
        """Runs the session on a preprocessed batch; called by :meth:`predict`.

        Returns:
            tuple: B x 1 x H' x W' mask logits, every router's result and
            the B "no target" logits (None for a model without a presence
            head).
        """
        if tuple(inputs.shape[-2:]) != self.image_shape:
            raise ValueError(f'{self.onnx_file} takes {self.image_shape} images, the '
                             f'test pipeline made {tuple(inputs.shape[-2:])}: infer with '
                             'the config (and --cfg-options) it was exported with')
        images, tokens = inputs.float().cpu().numpy(), self.tokenizer(texts).numpy()
        # a graph exported without --dynamic-batch takes one sample at a time
        step = len(images) if self.batch_size is None else self.batch_size
        runs = [self.session.run(None, dict(image=images[i:i + step], tokens=tokens[i:i + step]))
                for i in range(0, len(images), step)]
        names = [o.name for o in self.session.get_outputs()]
        outs = {name: torch.from_numpy(np.concatenate(parts))
                for name, parts in zip(names, zip(*runs))}
        routings = {name: RoutingResult(*(outs.get(f'routing.{name}.{f}')
                                          for f in ROUTING_FIELDS))
                    for name in self._experts}
        no_target = outs.get(NO_TARGET)
        return (outs[LOGITS].to(inputs.device), routings,
                None if no_target is None else no_target.to(inputs.device))

    def predict(self, inputs: Tensor, data_samples: list) -> list:
        """Predict mode: as :meth:`ReferringSegmentor.predict`."""
        logits, routings, no_target = self.run(inputs, [ds.text for ds in data_samples])
        return self.postprocess_result(logits, data_samples, inputs.shape[-2:], routings,
                                       no_target)

    def _forward(self, inputs: Tensor, data_samples: Optional[list] = None) -> Tensor:
        """Tensor mode: the mask logits at the head's resolution."""
        return self.run(inputs, [ds.text for ds in data_samples])[0]

    def loss(self, inputs: Tensor, data_samples: list) -> dict:
        raise RuntimeError(f'{self.onnx_file}: an exported model only predicts; train the '
                           'PyTorch model (backend pytorch)')
