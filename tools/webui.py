"""A web page for trying a referring segmentation model on your own photos.

Upload (or drop, or paste) a photo, type one sentence per line, press
Segment: one overlay per sentence (mask fill, outline and the sentence,
drawn by sera_mm's visualiser at the photo's own size), the binary masks as
PNG files to download and, for a SERA model, what its routers chose for
each sentence (per SERA-Fusion level the chosen experts and their weights,
per SERA-Adapter block the soft-router weights, and how much that routing
changed between the sentences of the photo). A sentence that names nothing
in the photo (an empty mask; a model with a presence head decides so
itself, docs/en/method.md s. 9) is answered "not in the picture", with the
head's probability.

Examples::

    # after `make demo`: the CPU demo model, examples from data/synthetic
    python tools/webui.py configs/synthetic/sera-tiny_synthetic.py \
        work_dirs/demo/epoch_6.pth
    # a converted DETRIS checkpoint on a GPU, reachable from other machines
    python tools/webui.py configs/detris/detris_dinov2-b_refcoco.py detris_b.pth \
        --device cuda --host 0.0.0.0 --port 8080 --examples ''

Needs the optional requirements (``pip install -c requirements/constraints.txt
-r requirements/webui.txt``, or ``make webui-deps``); the sera_mm package
itself never imports Gradio. The model is loaded once, at start-up; up to
:data:`CONCURRENT_REQUESTS` requests run on it at once (a forward keeps
nothing on the model), the others wait in Gradio's queue.
Photos are read by :func:`sera_mm.apis.load_image` (EXIF orientation,
grayscale, transparency, large photos: see :mod:`sera_mm.apis.photo`) and
segmented by :func:`sera_mm.apis.inference_referring`, the paths of
``tools/demo.py``. The page is served on this machine only unless ``--host``
says otherwise; Gradio's public share links are never opened.
"""
import argparse
import itertools
import json
import logging
import os
import os.path as osp
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
DEFAULT_EXAMPLES = osp.join(REPO, 'data', 'synthetic')
#: Most sentences one request segments (one forward for all of them).
MAX_SENTENCES = 6
#: Request folders (overlays, masks) kept on disk; older ones are removed.
KEEP_REQUESTS = 16
#: Requests the model serves at once: on a CPU one forward already uses every
#: core, a second lets a short request pass a long one.
CONCURRENT_REQUESTS = 2
#: Element ids of the page (the browser test and the screenshot use them).
IDS = dict(photo='photo', sentences='sentences', threshold='threshold', run='run',
           overlays='overlays', status='status', masks='masks', routing_plot='routing-plot',
           routing_text='routing-text', examples='examples')
NO_ROUTING = ('Routing is not available for this model: it has no routers '
              '(no SERA-Fusion level, no SERA-Adapter; a DETRIS model). A SERA model '
              'shows here which experts each sentence chose.')
EXPERT_COLOURS = ('#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b')

logger = logging.getLogger('sera_webui')


class RequestError(ValueError):
    """A request the page cannot run; the message is shown to the user."""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Web page: segment what a sentence refers to in an uploaded photo')
    parser.add_argument('config', help='config file of the model')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N' (default cpu)")
    parser.add_argument('--backend', choices=['pytorch', 'onnxruntime'], default='pytorch',
                        help='onnxruntime: checkpoint is the file tools/deployment/'
                        'export_onnx.py exported from config (default pytorch)')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to serve on (default 127.0.0.1: this machine only; '
                        '0.0.0.0 for every interface)')
    parser.add_argument('--port', type=int, default=7860, help='port (default 7860)')
    parser.add_argument('--examples', default=DEFAULT_EXAMPLES,
                        help='a REFER-format folder (images/, refsyn/) whose test images '
                        "become the page's examples (default data/synthetic; '' for none)")
    parser.add_argument('--num-examples', type=int, default=4,
                        help='examples shown (default 4)')
    parser.add_argument('--alpha', type=float, default=0.45,
                        help='opacity of the mask fill (default 0.45)')
    parser.add_argument('--cfg-options', nargs='+', default=None,
                        help='override settings of the config, key=value')
    args = parser.parse_args(argv)
    if not re.fullmatch(r'cpu|cuda(:\d+)?', args.device):
        parser.error(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if not 0 < args.port < 65536:
        parser.error(f'--port must be in 1..65535, got {args.port}')
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f'--alpha must be in [0, 1], got {args.alpha}')
    for name in ('config', 'checkpoint'):
        if not osp.isfile(getattr(args, name)):
            parser.error(f'{name} not found: {getattr(args, name)}')
    return args


# -- requests ----------------------------------------------------------------
def parse_sentences(text: Any, limit: int = MAX_SENTENCES) -> Tuple[List[str], int]:
    """The sentences of the text box, one per non-blank line.

    Returns:
        tuple: Up to ``limit`` sentences, and how many lines were left out.

    Raises:
        RequestError: No sentence at all.
    """
    lines = [line.strip() for line in str(text or '').splitlines()]
    sentences = [line for line in lines if line]
    if not sentences:
        raise RequestError('Type a sentence describing the object to segment '
                           '(one per line for several objects).')
    return sentences[:limit], max(0, len(sentences) - limit)


def _slug(text: str, length: int = 32) -> str:
    slug = re.sub(r'[^A-Za-z0-9]+', '-', text).strip('-').lower()[:length].strip('-')
    return slug or 'sentence'


class Segmenter:
    """Runs one request of the page: the model, the visualiser, the files.

    Everything model-side goes through :mod:`sera_mm.apis` (one read of the
    photo by :func:`load_image`, one batched :func:`inference_referring` for
    all its sentences, with their routing); the pictures are drawn by
    :class:`~sera_mm.visualization.ReferringVisualizer`.

    Args:
        model: From :func:`sera_mm.apis.init_model`.
        out_dir (str): Folder for the request files (one sub-folder each,
            the newest :data:`KEEP_REQUESTS` kept).
        alpha (float): Opacity of the mask fill.
    """

    def __init__(self, model, out_dir: str, alpha: float = 0.45) -> None:
        from sera_mm.apis import default_threshold, has_routers
        from sera_mm.visualization import ReferringVisualizer
        self.model = model
        self.out_dir = out_dir
        self.threshold = default_threshold(model)
        self.routed = has_routers(model)
        self.visualizer = ReferringVisualizer(name=f'sera_webui_{id(self)}', alpha=alpha)
        self._count = itertools.count(1)  # next() is atomic: requests run in threads
        self._draw_lock = threading.Lock()  # the visualiser holds the picture it draws

    def _request_dir(self) -> str:
        path = osp.join(self.out_dir, f'request_{next(self._count):06d}')
        os.makedirs(path, exist_ok=True)
        old = sorted(d for d in os.listdir(self.out_dir) if d.startswith('request_'))
        for name in old[:-KEEP_REQUESTS]:
            shutil.rmtree(osp.join(self.out_dir, name), ignore_errors=True)
        return path

    def __call__(self, image_path: Optional[str], image_name: Optional[str], text: Any,
                 threshold: Optional[float] = None) -> Dict[str, Any]:
        """Segments every sentence of ``text`` in the photo.

        Returns:
            dict: ``overlays`` [(path, caption)], ``masks`` [path],
            ``routings`` (one per sentence, or None), ``sentences``,
            ``skipped`` (lines over the limit), ``size`` (w, h), ``shares``
            (mask area per sentence; 0: :func:`not_in_picture`),
            ``scores`` (per sentence the presence head's probability that
            it names nothing, None without a head), ``threshold`` and
            ``seconds``.

        Raises:
            RequestError: No photo, no sentence, a photo that cannot be read
                or a bad threshold; the message says which.
        """
        import cv2
        import mmcv

        from sera_mm.apis import inference_referring, load_image
        if not image_path:
            raise RequestError('Upload a photo first (or pick one of the examples).')
        sentences, skipped = parse_sentences(text)
        if threshold is None:
            threshold = self.threshold
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise RequestError(f'The threshold must be a number, got {threshold!r}.') from None
        if not 0.0 <= threshold <= 1.0:
            raise RequestError(f'The threshold must be in [0, 1], got {threshold}.')
        name = image_name or osp.basename(image_path)
        try:
            image = load_image(image_path)
        except (ValueError, OSError) as e:
            raise RequestError('Cannot read the photo: ' + str(e).replace(image_path, name)) \
                from None
        start = time.perf_counter()
        results = inference_referring(self.model, [image] * len(sentences), sentences,
                                      threshold=threshold, return_routing=self.routed)
        rgb = mmcv.bgr2rgb(image)
        folder = self._request_dir()
        overlays, masks, shares, scores = [], [], [], []
        for i, (sentence, result) in enumerate(zip(sentences, results), start=1):
            mask = result.pred_sem_seg.data[0].cpu().numpy().astype(bool)
            score = result.get('no_target_score')
            score = None if score is None else float(score)
            missing = None if mask.any() else not_in_picture(sentence, score)
            with self._draw_lock:
                drawn = self.visualizer.draw_referring(rgb, mask, missing or sentence)
            assert drawn.shape[:2] == image.shape[:2]
            stem = f'{i}_{_slug(sentence)}'
            overlay_path = osp.join(folder, f'overlay_{stem}.png')
            mask_path = osp.join(folder, f'mask_{stem}.png')
            cv2.imwrite(overlay_path, mmcv.rgb2bgr(drawn))
            cv2.imwrite(mask_path, mask.astype(np.uint8) * 255)
            share = float(mask.mean())
            overlays.append((overlay_path,
                             missing or f'{sentence}  ({100 * share:.1f}% of the photo)'))
            masks.append(mask_path)
            shares.append(share)
            scores.append(score)
        routings = [r.routing for r in results] if self.routed else None
        return dict(overlays=overlays, masks=masks, routings=routings, sentences=sentences,
                    skipped=skipped, size=(image.shape[1], image.shape[0]), shares=shares,
                    scores=scores, threshold=threshold, seconds=time.perf_counter() - start)


def not_in_picture(sentence: str, score: Optional[float]) -> str:
    """The page's answer to a sentence whose mask is empty, with the
    presence head's probability ``score`` when the model has one."""
    return f'"{sentence}": not in the picture' + ('' if score is None else f' (p = {score:.2f})')


def status_line(out: Dict[str, Any]) -> str:
    """The line under the overlays for a request's result (:class:`Segmenter`):
    what ran, and which sentences name nothing in the photo."""
    w, h = out['size']
    line = (f'{len(out["sentences"])} sentence(s) on a {w} x {h} photo, threshold '
            f'{out["threshold"]:.2f}, {out["seconds"]:.1f} s.')
    missing = [not_in_picture(sentence, score) for sentence, share, score
               in zip(out['sentences'], out['shares'], out['scores']) if not share]
    return line + ''.join(f'\n\n{m}.' for m in missing)


# -- routing chart -----------------------------------------------------------
def _short(text: str, length: int = 48) -> str:
    return text if len(text) <= length else text[:length - 1] + '…'


def routing_change(routings: Optional[Sequence[dict]]) -> Optional[Tuple[float, str]]:
    """How much the routing changed between the sentences of one photo.

    SERA's routers read the visual features, so on one photo their weights
    barely move with the sentence; this number says by how much they did.

    Returns:
        tuple or None: The largest absolute difference of one expert's
        weight between any two sentences, over every SERA-Fusion level and
        SERA-Adapter block, and where it is ('level 1', 'adapter block 3');
        None for fewer than two sentences or no routers.
    """
    if not routings or len(routings) < 2:
        return None
    best = (0.0, '')
    for group in ('fusion', 'adapter'):
        for entries in zip(*(routing[group] for routing in routings)):
            where = (f'level {entries[0]["level"]}' if group == 'fusion' else
                     f'adapter block {entries[0]["block"].split(".")[-1]}')
            for weights in zip(*(entry['weights'] for entry in entries)):
                best = max(best, (max(weights) - min(weights), where), key=lambda b: b[0])
    return best


def routing_change_text(routings: Optional[Sequence[dict]]) -> str:
    """:func:`routing_change` in words ('' when there is nothing to compare)."""
    change = routing_change(routings)
    if change is None:
        return ''
    value, where = change
    at = f', at {where}' if value > 0 else ''
    return (f'Routing changed by {value:.2f} between the {len(routings)} sentences '
            f"(largest difference of one expert's weight{at}).")


def routing_figure(sentences: Sequence[str], routings: Sequence[dict]):
    """A small bar chart of the routing of each sentence.

    One row per sentence: left, per SERA-Fusion level, the weight of every
    expert (0 for those not chosen; chosen ones are labelled); right, per
    SERA-Adapter block, the soft router's spatial and boundary weights.
    With several sentences the title says how much the routing changed
    between them (:func:`routing_change_text`). Returns a matplotlib Figure
    (no pyplot state is touched).
    """
    from matplotlib.figure import Figure
    first = routings[0]
    panels = [p for p in ('fusion', 'adapter') if first[p]]
    change = routing_change_text(routings)
    change_h = 0.35 if change else 0.0  # inches above the rows
    fig = Figure(figsize=(4.2 * len(panels) + 0.4, 2.1 * len(routings) + 0.5 + change_h),
                 dpi=90)
    axes = fig.subplots(len(routings), len(panels), squeeze=False)
    for row, (sentence, routing) in enumerate(zip(sentences, routings)):
        for col, panel in enumerate(panels):
            ax = axes[row][col]
            entries = routing[panel]
            experts = entries[0]['experts']
            width = 0.8 / len(experts)
            for e, expert in enumerate(experts):
                xs = [i + (e - (len(experts) - 1) / 2) * width for i in range(len(entries))]
                ys = [entry['weights'][e] for entry in entries]
                bars = ax.bar(xs, ys, width, color=EXPERT_COLOURS[e % len(EXPERT_COLOURS)],
                              label=expert, edgecolor='white', linewidth=0.5)
                for bar, y in zip(bars, ys):
                    if y > 0:
                        ax.text(bar.get_x() + bar.get_width() / 2, y + 0.02, f'{y:.2f}',
                                ha='center', va='bottom', fontsize=6.5)
            if panel == 'fusion':
                labels = [f'level {entry["level"]}' for entry in entries]
                title = 'SERA-Fusion: chosen experts'
            else:
                labels = [f'block {entry["block"].split(".")[-1]}' for entry in entries]
                title = 'SERA-Adapter: soft-router weights'
            ax.set_xticks(range(len(entries)))
            ax.set_xticklabels(labels, fontsize=8)
            ax.set_ylim(0, 1.15)
            ax.tick_params(axis='y', labelsize=7)
            ax.grid(axis='y', alpha=0.3)
            ax.set_axisbelow(True)
            ax.set_title(f'"{_short(sentence)}"\n{title}' if col == 0 else f'\n{title}',
                         fontsize=8.5)
            if row == 0:
                ax.legend(fontsize=7, loc='upper right', ncol=len(experts), frameon=False)
        axes[row][0].set_ylabel('weight', fontsize=8)
    if change:
        fig.suptitle(change, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - change_h / fig.get_figheight()))
    return fig


def routing_markdown(sentences: Sequence[str], routings: Optional[Sequence[dict]]) -> str:
    """The routing as text: how much it changed between the sentences
    (:func:`routing_change_text`), then per sentence each level's chosen
    experts with their weights and each adapter block's soft weights."""
    if routings is None:
        return NO_ROUTING
    change = routing_change_text(routings)
    lines = [change, ''] if change else []
    for sentence, routing in zip(sentences, routings):
        parts = []
        for entry in routing['fusion']:
            chosen = ', '.join(f'{e} {entry["weights"][entry["experts"].index(e)]:.2f}'
                               for e in entry['chosen'])
            parts.append(f'level {entry["level"]}: {chosen}')
        for entry in routing['adapter']:
            soft = ' / '.join(f'{e} {w:.2f}' for e, w in zip(entry['experts'], entry['weights']))
            parts.append(f'adapter block {entry["block"].split(".")[-1]}: {soft}')
        lines.append(f'- **{sentence}**: ' + '; '.join(parts))
    return '\n'.join(lines)


# -- examples ----------------------------------------------------------------
def find_examples(root: Optional[str], count: int = 4,
                  splits: Sequence[str] = ('testA', 'testB', 'val')) -> List[List[str]]:
    """``[image path, sentences]`` pairs from a REFER-format folder.

    Reads ``refsyn/instances.json`` and ``refsyn/refs(unc).p`` (the
    synthetic set's layout, ``tools/dataset_converters/generate_synthetic.py``)
    and takes the first ``count`` held-out images with two referents: their
    first sentences, one per line. An absent folder gives no examples.
    """
    if not root:
        return []
    ann, refs_file = osp.join(root, 'refsyn', 'instances.json'), osp.join(root, 'refsyn',
                                                                          'refs(unc).p')
    if not (osp.isfile(ann) and osp.isfile(refs_file)):
        logger.warning('no examples: %s has no refsyn/instances.json and refs(unc).p '
                       '(make demo generates data/synthetic)', root)
        return []
    from sera_mm.datasets.refer_pickle import load_refer_pickle
    with open(ann, encoding='utf-8') as f:
        files = {img['id']: img['file_name'] for img in json.load(f)['images']}
    by_image: 'OrderedDict[int, List[str]]' = OrderedDict()
    for split in splits:
        for ref in load_refer_pickle(refs_file):
            if ref.get('split') == split and ref.get('sentences'):
                by_image.setdefault(ref['image_id'], []).append(ref['sentences'][0]['sent'])
    examples = []
    for image_id, sentences in by_image.items():
        path = osp.join(root, 'images', files.get(image_id, ''))
        if len(sentences) >= 2 and osp.isfile(path):
            examples.append([path, '\n'.join(sentences[:2])])
        if len(examples) == count:
            break
    return examples


# -- the page ----------------------------------------------------------------
def _import_gradio():
    try:
        import gradio as gr
    except ImportError as e:
        raise SystemExit('error: the web demo needs Gradio, an optional requirement: '
                         'pip install -c requirements/constraints.txt -r requirements/webui.txt '
                         f'(or make webui-deps) [{e}]') from None
    return gr


def photo_input_class(gr):
    """gr.Image whose value reaches the request as the uploaded file itself.

    gr.Image would open the upload with Pillow before the request runs (an
    unreadable file then fails with Gradio's message, not the project's).
    Here Gradio still checks that the file is one it received (its upload
    folder or an example) before ``preprocess``, which then hands over path
    and name; :func:`sera_mm.apis.load_image` reads the file like every other
    path of the project. ``is_template`` keeps gr.Image's front-end. A
    subclass, not a patched instance: Gradio rebuilds a session's component
    from its class when an example updates it.
    """
    from unittest import mock

    from gradio import component_meta

    # Gradio writes a .pyi stub beside the source of every Component
    # subclass (for authors of custom components): not into this repository.
    with mock.patch.object(component_meta, 'create_or_modify_pyi', lambda *args: None):

        class PhotoInput(gr.Image):
            is_template = True

            def preprocess(self, payload):
                if payload is None:
                    return None
                path = str(payload.path)
                return path, payload.orig_name or osp.basename(path)

    return PhotoInput


def build_app(segmenter: Segmenter, examples: Sequence[Sequence[str]] = (),
              title: str = 'sera_mm: referring segmentation', subtitle: str = ''):
    """The Gradio page around ``segmenter`` (not launched)."""
    gr = _import_gradio()
    PhotoInput = photo_input_class(gr)

    def run(photo, text, threshold):
        if isinstance(photo, str):  # gr.Image's own value: the file's path
            photo = (photo, osp.basename(photo))
        path, name = photo if photo else (None, None)
        try:
            out = segmenter(path, name, text, threshold)
        except RequestError as e:
            raise gr.Error(str(e), print_exception=False)
        except Exception as e:  # a bug or an odd input: say so, keep serving
            logger.exception('request failed')
            raise gr.Error(f'Segmentation failed: {type(e).__name__}: {e}')
        if out['skipped']:
            gr.Warning(f'Only the first {MAX_SENTENCES} sentences were segmented '
                       f'({out["skipped"]} more left out).')
        status = status_line(out)
        if out['routings'] is None:
            plot = gr.Plot(value=None, visible=False)
        else:
            plot = gr.Plot(value=routing_figure(out['sentences'], out['routings']),
                           visible=True)
        return (gr.Gallery(value=out['overlays'], columns=min(3, len(out['overlays']))),
                status, out['masks'], plot, routing_markdown(out['sentences'], out['routings']))

    def clear():
        """The outputs as the page starts: called after a refused or failed
        request, so that the previous request's results do not stay under
        the error as if they were its answer."""
        return (gr.Gallery(value=None), '', None,
                gr.Plot(value=None, visible=segmenter.routed),
                '' if segmenter.routed else NO_ROUTING)

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f'## {title}\n{subtitle}\n\nUpload or drop a photo, type what to '
                    'segment (one sentence per line: one overlay each), press **Segment**.')
        with gr.Row():
            with gr.Column(scale=2):
                photo = PhotoInput(label='Photo', type='filepath', image_mode=None,
                                   sources=['upload', 'clipboard'], elem_id=IDS['photo'],
                                   height=320)
                sentences = gr.Textbox(label='Sentences (one per line)', lines=3,
                                       max_lines=MAX_SENTENCES + 2, elem_id=IDS['sentences'],
                                       placeholder='the red circle\nthe small square on the left')
                threshold = gr.Slider(0.0, 1.0, value=segmenter.threshold, step=0.01,
                                      label='Mask threshold (probability; the model\'s '
                                      f'default {segmenter.threshold:.2f})',
                                      elem_id=IDS['threshold'])
                button = gr.Button('Segment', variant='primary', elem_id=IDS['run'])
                if examples:
                    gr.Examples(examples=[list(e) for e in examples],
                                inputs=[photo, sentences], label='Examples (synthetic set)',
                                elem_id=IDS['examples'])
            with gr.Column(scale=3):
                overlays = gr.Gallery(label='Overlays (one per sentence)', show_label=False,
                                      columns=2, height=400, object_fit='contain', format='png',
                                      elem_id=IDS['overlays'], interactive=False)
                status = gr.Markdown(elem_id=IDS['status'])
                masks = gr.File(label='Masks (PNG, at the photo\'s size)', file_count='multiple',
                                elem_id=IDS['masks'], interactive=False)
                gr.Markdown('**What the routers chose, per sentence**')
                plot = gr.Plot(show_label=False, elem_id=IDS['routing_plot'],
                               visible=segmenter.routed)
                routing = gr.Markdown(value='' if segmenter.routed else NO_ROUTING,
                                      elem_id=IDS['routing_text'])
        outputs = [overlays, status, masks, plot, routing]
        # one queue for the model (both triggers); the progress (and an
        # error's badge) on the overlays only
        common = dict(fn=run, inputs=[photo, sentences, threshold], outputs=outputs,
                      concurrency_limit=CONCURRENT_REQUESTS, concurrency_id='model',
                      show_progress_on=[overlays])
        cleared = dict(fn=clear, inputs=None, outputs=outputs, api_name=False, queue=False,
                       show_progress='hidden')
        button.click(api_name='segment', **common).failure(**cleared)
        # Shift+Enter in the text box
        sentences.submit(api_name=False, **common).failure(**cleared)
    return app


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
    _import_gradio()  # before the model loads: a missing Gradio fails at once
    logging.basicConfig(level=logging.INFO, format='[webui] %(message)s')
    logging.getLogger('httpx').setLevel(logging.WARNING)
    from mmengine.config import DictAction

    from sera_mm.apis import init_model
    cfg_options = None
    if args.cfg_options:
        namespace = argparse.Namespace()
        DictAction(option_strings=[], dest='cfg')(None, namespace, args.cfg_options)
        cfg_options = namespace.cfg
    try:
        model = init_model(args.config, args.checkpoint, device=args.device,
                           cfg_options=cfg_options, backend=args.backend)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print(f'error: {str(e).splitlines()[0] if str(e) else type(e).__name__}',
              file=sys.stderr)
        return 1
    examples = find_examples(args.examples, args.num_examples)
    with tempfile.TemporaryDirectory(prefix='sera_webui_') as out_dir:
        segmenter = Segmenter(model, out_dir, alpha=args.alpha)
        kind = 'SERA (routers shown)' if segmenter.routed else 'no routers (DETRIS)'
        subtitle = (f'Model `{osp.basename(args.config)}` with `{osp.basename(args.checkpoint)}` '
                    f'on {args.device}: {kind}.')
        app = build_app(segmenter, examples, subtitle=subtitle)
        app.queue(max_size=32)
        logger.info('model loaded; serving on http://%s:%d', args.host, args.port)
        # Gradio serves uploads and its own outputs; of this disk, only the
        # examples' image folder besides
        example_dirs = sorted({osp.dirname(osp.abspath(path)) for path, _ in examples})
        app.launch(server_name=args.host, server_port=args.port, share=False, show_error=True,
                   inbrowser=False, allowed_paths=example_dirs or None, footer_links=[])
    return 0


if __name__ == '__main__':
    sys.exit(main())
