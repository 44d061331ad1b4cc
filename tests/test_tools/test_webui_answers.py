"""tools/webui.py's answers without a browser: "not in the picture", the
outputs cleared after a refused request, how much the routing changed
between the sentences of one photo."""
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.paths import REPO
from helpers.tool_runner import load_tool

# the widths of the tiny config's decoder and sentence feature (configs/gres/)
PRESENCE = {'model.presence_head': dict(type='PresenceHead', in_channels=128,
                                        text_channels=128, channels=16)}


@pytest.fixture(scope='module')
def webui():
    """The tool as a module; in sys.modules, where Gradio looks up the file
    of the page's component classes."""
    module = load_tool('webui.py')
    sys.modules[module.__name__] = module
    yield module
    sys.modules.pop(module.__name__, None)


@pytest.fixture(scope='module')
def photo(synthetic_refer):
    name = sorted(os.listdir(osp.join(synthetic_refer, 'images')))[0]
    return osp.join(synthetic_refer, 'images', name)


@pytest.fixture(scope='module')
def presence_model(tiny_model_files):
    from sera_mm.apis import init_model
    torch.manual_seed(0)
    return init_model(tiny_model_files[0], cfg_options=PRESENCE)


def _routing(fusion, adapter):
    """A routing as sample_routing gives it: fusion [[weights per expert] per
    level], adapter [[spatial, boundary] per block]."""
    return dict(
        fusion=[dict(level=i, experts=['a', 'b', 'c'], weights=w,
                     chosen=[e for e, x in zip('abc', w) if x > 0], top_k=2)
                for i, w in enumerate(fusion)],
        adapter=[dict(block=f'backbone.adapters.{i}', experts=['spatial', 'boundary'],
                      weights=w) for i, w in enumerate(adapter)])


def test_routing_change_is_the_largest_weight_difference(webui):
    one = _routing([[0.6, 0.4, 0.0], [0.0, 0.5, 0.5]], [[0.7, 0.3], [0.5, 0.5]])
    two = _routing([[0.6, 0.4, 0.0], [0.0, 0.5, 0.5]], [[0.7, 0.3], [0.46, 0.54]])
    three = _routing([[0.59, 0.41, 0.0], [0.0, 0.5, 0.5]], [[0.7, 0.3], [0.48, 0.52]])
    assert webui.routing_change([one, two, three]) == (pytest.approx(0.04), 'adapter block 1')
    # another expert chosen at level 1: 0.5 of weight moved
    four = _routing([[0.6, 0.4, 0.0], [0.5, 0.5, 0.0]], [[0.7, 0.3], [0.5, 0.5]])
    assert webui.routing_change([one, four]) == (pytest.approx(0.5), 'level 1')
    assert webui.routing_change([one, one])[0] == 0.0
    assert webui.routing_change([one]) is None and webui.routing_change(None) is None

    text = webui.routing_change_text([one, two, three])
    assert text == ('Routing changed by 0.04 between the 3 sentences (largest difference '
                    "of one expert's weight, at adapter block 1).")
    assert 'at ' not in webui.routing_change_text([one, one])
    assert webui.routing_change_text([one]) == ''

    sentences = ['the red circle', 'the blue square', 'the star']
    assert webui.routing_markdown(sentences, [one, two, three]).splitlines()[0] == text
    assert webui.routing_markdown(sentences[:1], [one]).startswith('- **the red circle**')
    assert webui.routing_figure(sentences, [one, two, three])._suptitle.get_text() == text
    assert webui.routing_figure(sentences[:1], [one])._suptitle is None


def test_the_page_says_how_much_the_routing_changed(webui, tiny_model_files, photo,
                                                    tmp_path):
    from sera_mm.apis import init_model
    segmenter = webui.Segmenter(init_model(*tiny_model_files[:2]), str(tmp_path))
    out = segmenter(photo, 'p.jpg', 'the red circle\nthe small blue square on the left')
    value, where = webui.routing_change(out['routings'])
    weights = [[w for group in ('fusion', 'adapter') for entry in r[group]
                for w in entry['weights']] for r in out['routings']]
    assert value == pytest.approx(float(np.abs(np.subtract(*weights)).max()))
    assert f'Routing changed by {value:.2f} between the 2 sentences' in \
        webui.routing_markdown(out['sentences'], out['routings'])


def test_a_sentence_naming_nothing_is_not_in_the_picture(webui, presence_model, photo,
                                                         tmp_path):
    from sera_mm.apis import inference_referring, load_image
    segmenter = webui.Segmenter(presence_model, str(tmp_path))
    sentences = ['the purple star', 'the red circle']
    scores = [float(r.no_target_score) for r in inference_referring(
        presence_model, [load_image(photo)] * 2, sentences)]
    old = presence_model.test_cfg['no_target_threshold']
    presence_model.test_cfg['no_target_threshold'] = -1.0  # every probability exceeds it
    try:
        out = segmenter(photo, 'p.jpg', '\n'.join(sentences))
    finally:
        presence_model.test_cfg['no_target_threshold'] = old
    answers = [f'"{s}": not in the picture (p = {p:.2f})' for s, p in zip(sentences, scores)]
    assert [caption for _, caption in out['overlays']] == answers
    assert out['scores'] == pytest.approx(scores) and out['shares'] == [0.0, 0.0]
    for path in out['masks']:
        assert not np.asarray(Image.open(path)).any()
    status = webui.status_line(out)
    assert status.startswith('2 sentence(s) on a ')
    for answer in answers:
        assert f'{answer}.' in status
    # the routing chart as usual
    assert len(out['routings']) == 2
    assert len(webui.routing_figure(out['sentences'], out['routings']).axes) == 4

    # the same sentences found: their share of the photo, no "not in the picture"
    presence_model.test_cfg['no_target_threshold'] = 1.0
    try:
        out = segmenter(photo, 'p.jpg', '\n'.join(sentences), 0.0)  # every pixel
    finally:
        presence_model.test_cfg['no_target_threshold'] = old
    assert all(caption.endswith('% of the photo)') for _, caption in out['overlays'])
    assert 'not in the picture' not in webui.status_line(out)


def test_an_empty_mask_without_a_head_is_not_in_the_picture(webui, tiny_model_files, photo,
                                                            tmp_path):
    from sera_mm.apis import init_model
    segmenter = webui.Segmenter(init_model(*tiny_model_files[:2]), str(tmp_path))
    out = segmenter(photo, 'p.jpg', 'the red circle', 1.0)  # no probability exceeds 1
    assert out['overlays'][0][1] == '"the red circle": not in the picture'
    assert out['scores'] == [None]
    assert webui.status_line(out).endswith('\n\n"the red circle": not in the picture.')


def test_a_refused_request_clears_the_previous_results(webui, tiny_model_files, tmp_path):
    """Both triggers of a request (the button, Shift+Enter) are followed, on
    failure, by a step that empties every output of the request."""
    from sera_mm.apis import init_model
    segmenter = webui.Segmenter(init_model(*tiny_model_files[:2]), str(tmp_path))
    app = webui.build_app(segmenter)
    requests = [fn for fn in app.fns.values() if fn.name == 'run']
    assert len(requests) == 2
    for request in requests:
        after = [fn for fn in app.fns.values() if fn.trigger_after == request._id]
        assert len(after) == 1 and after[0].trigger_only_on_failure
        assert [b._id for b in after[0].outputs] == [b._id for b in request.outputs]
        gallery, status, masks, plot, routing = after[0].fn()
        assert not gallery.value
        assert status == '' and masks is None and routing == ''
        assert plot.value is None and plot.visible

    torch.manual_seed(0)
    detris = webui.Segmenter(init_model(f'{REPO}/configs/synthetic/detris-tiny_synthetic.py'),
                             str(tmp_path / 'detris'))
    clear = next(fn for fn in webui.build_app(detris).fns.values() if fn.trigger_only_on_failure)
    *_, plot, routing = clear.fn()
    assert not plot.visible and routing == webui.NO_ROUTING
