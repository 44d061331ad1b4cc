"""Export a referring segmentor (DETRIS, SERA) to ONNX and check it against PyTorch.

Usage:
    python tools/deployment/export_onnx.py CONFIG CKPT OUT.onnx \\
        [--img-size N] [--opset N] [--dynamic-batch] [--check]

The graph is the whole network as the config builds it, from token ids to
mask logits: inputs ``image`` (B x 3 x S x S float32, letterboxed and
normalised by the config's test pipeline and data preprocessor) and
``tokens`` (B x L int64 CLIP ids, L the text encoder's ``context_length``);
outputs ``mask_logits`` (B x 1 x S/4 x S/4 for the DETRIS head, before the
sigmoid), for a model with a ``presence_head`` ``no_target_logits`` (B,
before the sigmoid) and, per router of a SERA model,
``routing.<router>.logits``, ``.weights`` (B x E) and, for Top-k routers,
``.indices`` (B x k). The letterbox, the tokenisation and the
post-processing (with the "no target" rules) stay in Python: ONNX
Runtime runs the file behind the inference API with the same code
(``init_model(config, OUT.onnx, backend='onnxruntime')``; ``tools/demo.py
--backend onnxruntime``). S is the config's test-pipeline size; ``--img-size``
only checks it.

``--check`` compares ONNX Runtime (CPU provider) with PyTorch on two
image-sentence pairs that were not the export's: every output within
``--atol`` (1e-4), the Top-k choices equal, and the binary masks at the
original size after the project's post-processing identical; exit status 1
otherwise. Exported with torch's dynamo exporter (``dynamo=True``, needs
``onnxscript``); see docs/en/deployment.md for what is and is not exported.
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import sys
import tempfile
import time
import types
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sera_mm.apis import inference_referring, init_model
from sera_mm.apis.onnxruntime_backend import LOGITS, NO_TARGET, ROUTERS_KEY, ROUTING_FIELDS
from sera_mm.models.backbones.pos_embed import resize_pos_embed

#: Image sizes (H, W) and sentences of the example inputs: the first pair
#: is traced, the others are the check's (a long one is truncated).
EXAMPLES = (((240, 320), 'the red circle on the left'),
            ((300, 180), 'a small blue square below the big green one near the top right '
                         'corner of the picture beside the yellow triangle'),
            ((160, 160), 'green one'))


class ExportableSegmentor(nn.Module):
    """The part of a :class:`ReferringSegmentor` that is exported.

    ``forward(image, tokens)`` is the segmentor's tensor path after the
    tokenisation (text encoder, backbone with adapters, neck with
    SERA-Fusion, decoder, heads), returning the outputs it names in
    ``output_names``. In export (:func:`export`) three parts take another
    form with the same value: SERA-Fusion mixes its experts with the dense
    dispatch (a static graph cannot hold the sparse dispatch's
    data-dependent sub-batches; both are equal in eval), DINOv2's position
    table is resized beforehand (:func:`position_table_for`) and the head's
    per-sample kernels are applied by :func:`exported_dynamic_conv`. The
    routers have no noise (eval mode).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.routers = model.router_experts()
        #: The names of the outputs of the last forward, in order.
        self.output_names: List[str] = []

    def forward(self, image: Tensor, tokens: Tensor) -> Tuple[Tensor, ...]:
        text = self.model.text_encoder(tokens)
        x, routings = self.model.extract_feat(image, text)
        outs, names = [self.model.decode_head(x, text)], [LOGITS]
        if getattr(self.model, 'presence_head', None) is not None:
            outs.append(self.model.presence_head(x, text))
            names.append(NO_TARGET)
        for name in self.routers:
            for field in ROUTING_FIELDS:  # indices: Top-k routers only
                value = getattr(routings[name], field)
                if value is not None:
                    outs.append(value)
                    names.append(f'routing.{name}.{field}')
        self.output_names = names
        return tuple(outs)


@contextlib.contextmanager
def position_table_for(backbone: nn.Module, image_shape: Sequence[int]) -> Iterator[None]:
    """While open, the DINOv2 backbone holds its position table resized (by
    torch, as its forward resizes it) to the patch grid of ``image_shape``.

    The forward then uses the table as it is. Otherwise the exporter folds
    the bicubic resize of the constant table into the graph with its own
    arithmetic, which differs from torch's by ~1e-5 and moves the logits of
    a B model by ~1e-4. Other backbones are left alone.
    """
    stored, grid = getattr(backbone, 'pos_embed', None), getattr(backbone, 'patch_resolution', None)
    hw = tuple(side // getattr(backbone, 'patch_size', 1) for side in image_shape)
    if stored is None or grid is None or tuple(grid) == hw:
        yield
        return
    with torch.no_grad():
        resized = resize_pos_embed(stored, grid, hw, backbone.num_extra_tokens,
                                   backbone.pos_embed_mode)
    backbone.pos_embed, backbone.patch_resolution = nn.Parameter(resized, False), hw
    try:
        yield
    finally:
        backbone.pos_embed, backbone.patch_resolution = stored, grid


def _float64_dynamic_conv(head: nn.Module, x: Tensor, sentence: Tensor) -> Tensor:
    """:meth:`DynamicConvHead.dynamic_conv`'s sums in float64: each kernel
    tap's sum over the channels (one batched product), then the taps'
    shifted maps added up."""
    b, c, h, w = x.shape
    k = head.kernel_size
    params = head.kernel_proj(sentence).double()
    taps = params[:, :-1].reshape(b, c, k * k).transpose(1, 2)
    maps = torch.bmm(taps, x.double().reshape(b, c, h * w)).reshape(b, k * k, h, w)
    maps = F.pad(maps, (k // 2, ) * 4)  # zeros: the conv's zero padding of x
    out = params[:, -1].reshape(b, 1, 1)
    for i in range(k):
        for j in range(k):
            out = out + maps[:, i * k + j, i:i + h, j:j + w]
    return out[:, None].float()


@contextlib.contextmanager
def exported_dynamic_conv(head: nn.Module) -> Iterator[None]:
    """While open, a :class:`DynamicConvHead` applies its per-sample kernels
    as :func:`_float64_dynamic_conv`: the same sums, in another form and
    precision.

    Its own form, a conv with one group per sample, cannot have a dynamic
    batch in ONNX (``Conv``'s ``group`` is a constant). And each logit (up
    to |30| with random B weights) sums 2,304 products: summed in float32 by
    another implementation than PyTorch's, DETRIS-B's differed from
    PyTorch's by 1.1e-4, summed in float64 by 8.6e-5 (the float32 rounding
    of the layers before). Inputs and outputs stay float32; the float64
    product costs ~1% of a B forward. Other heads are left alone.
    """
    if not (hasattr(head, 'dynamic_conv') and hasattr(head, 'kernel_proj')):
        yield
        return
    head.dynamic_conv = types.MethodType(_float64_dynamic_conv, head)
    try:
        yield
    finally:
        del head.dynamic_conv


def example_image(shape: Tuple[int, int], seed: int) -> np.ndarray:
    """A deterministic H x W x 3 uint8 BGR image: smooth colour blobs."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    import cv2
    return cv2.resize(small, shape[::-1], interpolation=cv2.INTER_CUBIC)


def model_inputs(model: nn.Module, pairs: Sequence[Tuple[np.ndarray, str]]
                 ) -> Tuple[Tensor, Tensor]:
    """The graph's inputs for image-sentence pairs: the config's test
    pipeline, the data preprocessor and the text encoder's tokeniser."""
    from mmengine.dataset import pseudo_collate
    batch = pseudo_collate([model.test_pipeline(dict(img=img, text=text))
                            for img, text in pairs])
    data = model.data_preprocessor(batch, False)
    tokens = model.text_encoder.tokenize([ds.text for ds in data['data_samples']])
    return data['inputs'], tokens


def export(model: nn.Module, out: str, opset: int = 18, dynamic_batch: bool = False,
           config: str = '') -> List[str]:
    """Exports ``model`` (from :func:`init_model`) to ``out``.

    Returns:
        list[str]: The output names.
    """
    wrapper = ExportableSegmentor(model).eval()
    # two samples for a dynamic batch: torch.export fixes a dimension traced at size 1
    pair = (example_image(EXAMPLES[0][0], seed=0), EXAMPLES[0][1])
    image, tokens = model_inputs(model, [pair] * (2 if dynamic_batch else 1))
    with torch.no_grad():
        wrapper(image, tokens)  # names the outputs
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim('batch', min=1, max=1024)
        dynamic_shapes = dict(image={0: batch}, tokens={0: batch})
    names = wrapper.output_names
    with torch.no_grad(), position_table_for(model.backbone, image.shape[-2:]), \
            exported_dynamic_conv(model.decode_head):
        program = torch.onnx.export(
            wrapper, (image, tokens), dynamo=True, opset_version=opset,
            input_names=['image', 'tokens'], output_names=names,
            dynamic_shapes=dynamic_shapes)
    program.model.metadata_props[ROUTERS_KEY] = json.dumps(
        [[name, list(experts)] for name, experts in wrapper.routers.items()])
    program.model.metadata_props['sera_mm.config'] = osp.basename(config)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    # one file (the B and L models are far below protobuf's 2 GiB), written
    # beside the target and renamed, so a failed export leaves no half file
    fd, tmp = tempfile.mkstemp(suffix='.onnx', dir=osp.dirname(osp.abspath(out)))
    os.close(fd)
    try:
        program.save(tmp, external_data=False)
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return names


def check(model: nn.Module, onnx_file: str, atol: float = 1e-4,
          batch: bool = False) -> Dict[str, object]:
    """Compares ONNX Runtime with PyTorch on :data:`EXAMPLES` (all but the
    traced pair); called by ``--check`` and the tests.

    Returns:
        dict: ``max_abs_diff`` per output name (the largest over the pairs),
        ``indices_equal``, ``mask_pixels_differing`` (of the binary masks at
        the original sizes, summed) and ``passed``.
    """
    onnx_model = init_model(model.cfg, onnx_file, backend='onnxruntime')
    wrapper = ExportableSegmentor(model).eval()
    pairs = [(example_image(shape, seed=i), text)
             for i, (shape, text) in enumerate(EXAMPLES) if i > 0]
    groups = [pairs] if batch else [[pair] for pair in pairs]
    diffs: Dict[str, float] = {}
    indices_equal = True
    for group in groups:
        image, tokens = model_inputs(model, group)
        with torch.no_grad():
            expected = wrapper(image, tokens)
        feed = dict(image=image.numpy(), tokens=tokens.numpy())
        got = onnx_model.session.run(wrapper.output_names, feed)
        for name, want, have in zip(wrapper.output_names, expected, got):
            if name.endswith('.indices'):
                indices_equal &= bool(np.array_equal(want.numpy(), have))
                continue
            diff = float(np.abs(want.float().numpy() - have).max())
            diffs[name] = max(diffs.get(name, 0.), diff)
    differing = 0
    for group in groups:
        images, texts = [img for img, _ in group], [text for _, text in group]
        for ours, theirs in zip(inference_referring(model, images, texts),
                                inference_referring(onnx_model, images, texts)):
            differing += int((ours.pred_sem_seg.data != theirs.pred_sem_seg.data).sum())
    passed = indices_equal and differing == 0 and max(diffs.values()) <= atol
    return dict(max_abs_diff=diffs, indices_equal=indices_equal,
                mask_pixels_differing=differing, passed=passed)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file of the model')
    parser.add_argument('checkpoint', help='checkpoint of the model (mmengine or a state dict)')
    parser.add_argument('out', help='the ONNX file to write')
    parser.add_argument('--img-size', type=int,
                        help="the input side; must be the config's test-pipeline size "
                        '(its default)')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset (default 18)')
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='a dynamic batch dimension (default: batch 1)')
    parser.add_argument('--check', action='store_true',
                        help='compare ONNX Runtime with PyTorch after the export')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest absolute difference --check allows (default 1e-4)')
    parser.add_argument('--cfg-options', nargs='+', default=None,
                        help='override settings of the config, key=value')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    for package in ('onnxscript', 'onnxruntime'):
        try:
            __import__(package)
        except ImportError:
            raise SystemExit(f'error: the export needs {package}, of the extra deploy: make '
                             'deploy-deps (pip install -e ".[deploy]")') from None
    cfg_options = None
    if args.cfg_options:
        from mmengine.config import DictAction
        namespace = argparse.Namespace()
        DictAction(option_strings=[], dest='cfg')(None, namespace, args.cfg_options)
        cfg_options = namespace.cfg
    if not args.out.endswith('.onnx'):
        raise SystemExit(f'error: OUT {args.out} must end with .onnx')
    try:
        model = init_model(args.config, args.checkpoint, device='cpu', cfg_options=cfg_options)
    except (FileNotFoundError, ValueError, KeyError) as e:  # the message names the input
        raise SystemExit(f'error: {e}') from None
    size = tuple(model_inputs(model, [(example_image((50, 70), 0), 'a')])[0].shape[-2:])
    if args.img_size is not None and size != (args.img_size, args.img_size):
        raise SystemExit(f'error: --img-size {args.img_size}: the test pipeline of '
                         f'{args.config} makes {size[0]} x {size[1]} inputs; the graph '
                         'takes what the pipeline makes: change its Letterbox scale '
                         '(--cfg-options) or drop --img-size')
    start = time.perf_counter()
    names = export(model, args.out, args.opset, args.dynamic_batch, args.config)
    print(f'{args.out}: exported in {time.perf_counter() - start:.0f} s, input '
          f'{size[0]} x {size[1]}, opset {args.opset}, batch '
          f'{"dynamic" if args.dynamic_batch else 1}, outputs {names}')
    if not args.check:
        return 0
    report = check(model, args.out, args.atol, batch=args.dynamic_batch)
    for name, diff in report['max_abs_diff'].items():
        print(f'  {name}: max |onnxruntime - pytorch| = {diff:.2e}')
    print(f"  Top-k choices equal: {report['indices_equal']}; mask pixels differing "
          f"at the original sizes: {report['mask_pixels_differing']}")
    print(f"check {'passed' if report['passed'] else 'FAILED'} (atol {args.atol:g})")
    return 0 if report['passed'] else 1


if __name__ == '__main__':
    sys.exit(main())
