"""tools/webui.py in a real browser, used as a new user would use it.

The server is started as the README says (``python tools/webui.py CONFIG
CKPT --port ...``) on a free local port, with the tiny config and a
checkpoint written here (random weights: the page, not the model, is under
test); headless Chromium (Debian's, driven by Selenium) uploads a photo
through the page's file input, types sentences, presses Segment and reads
what the page shows: the overlays and their size, the mask downloads, the
routing chart, the error messages. Missing browser parts fail the test with
how to install them (``make test-deps``), never skip it. The last tests
check the request handler's pieces without a browser.
"""
import io
import os
import os.path as osp
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.browser import BrowserUnavailable, WebUIServer, requested_urls, start_chromium
from helpers.paths import REPO
from helpers.tool_runner import load_tool

DETRIS_TINY = osp.join(REPO, 'configs', 'synthetic', 'detris-tiny_synthetic.py')
WAIT_S = 120  # a request on the CPU takes about a second; generous for a busy CI
NO_ROUTING_TEXT = 'Routing is not available for this model'


@pytest.fixture(scope='module')
def browser():
    try:
        driver = start_chromium()
    except BrowserUnavailable as e:
        problem = str(e)
    else:
        problem = None
    if problem:  # a failure, not a skip: make test installs the browser
        pytest.fail(f'the web demo test needs a browser: {problem}', pytrace=False)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope='module')
def phone_photo(synthetic_refer, tmp_path_factory):
    """A synthetic test image saved as a phone saves a portrait photo:
    stored sideways, with EXIF orientation 6. Returns (path, (w, h) as
    displayed), the displayed picture being the original image."""
    from sera_mm.apis import load_image
    name = sorted(os.listdir(osp.join(synthetic_refer, 'images')))[0]
    upright = load_image(osp.join(synthetic_refer, 'images', name))[..., ::-1]
    upright = np.ascontiguousarray(np.repeat(np.repeat(upright, 2, 0), 2, 1))  # 2x: visible
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # viewer turns it back clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    path = str(tmp_path_factory.mktemp('photos') / 'portrait.jpg')
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    h, w = upright.shape[:2]
    assert w != h
    return path, (w, h)


def _wait(driver, condition, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition(driver)
            if value:
                return value
        except Exception as e:  # stale elements while the page re-renders
            last_error = e
        time.sleep(0.25)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}'
                         + (f' (last error: {last_error})' if last_error else ''))


def _css(driver, selector):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def _upload(driver, path):
    inputs = _wait(driver, lambda d: _css(d, '#photo input[type=file]'), 'the photo upload')
    inputs[0].send_keys(path)
    # the page shows the uploaded photo before the request can use it
    _wait(driver, lambda d: _css(d, '#photo img'), 'the uploaded photo preview')


def _type(driver, text):
    box = _css(driver, '#sentences textarea')[0]
    box.clear()
    if text:
        box.send_keys(text)
    else:  # clear() is not seen by the page's framework without a keystroke
        box.send_keys(' ')


def _overlays(driver):
    """[(natural width, natural height, caption)] of the loaded overlays."""
    items = []
    for button in _css(driver, '#overlays button.thumbnail-item'):
        img = button.find_elements('css selector', 'img')
        if not img:
            return []
        size = driver.execute_script(
            'const i = arguments[0]; return i.complete ? [i.naturalWidth, i.naturalHeight] : null;',
            img[0])
        if not size or not size[0]:
            return []
        items.append((size[0], size[1], button.text))
    return items


def _run_and_wait_for(driver, count, size=None):
    """Presses Segment, waits for ``count`` overlays (of ``size`` (w, h),
    when given: the old results of another photo do not count)."""
    _css(driver, '#run')[0].click()

    def ready(d):
        items = _overlays(d)
        return len(items) == count and (size is None or items[0][:2] == tuple(size)) and items

    return _wait(driver, ready, f'{count} overlays on the page')


def _toast(driver, text):
    return _wait(driver, lambda d: [t.text for t in _css(d, '[data-testid=toast-body]')
                                    if text in t.text],
                 f'a message containing {text!r}', timeout=60)


def _dismiss_toasts(driver):
    for button in _css(driver, '[data-testid=toast-body] button, .toast-close'):
        try:
            button.click()
        except Exception:
            pass


@pytest.mark.integration
def test_sera_page_segments_an_uploaded_photo_and_shows_the_routing(
        browser, tiny_model_files, phone_photo, tmp_path):
    config, checkpoint, data_root = tiny_model_files
    photo, (w, h) = phone_photo
    with WebUIServer(config, checkpoint, str(tmp_path), ['--examples', data_root]) as server:
        browser.get(server.url)
        _wait(browser, lambda d: _css(d, '#run'), 'the page')
        # 0. an example (the synthetic set's): it fills photo and sentences
        example_path, example_text = load_tool('webui.py').find_examples(data_root)[0]
        ew, eh = Image.open(example_path).size
        _wait(browser, lambda d: _css(d, '#examples tbody tr'), 'the examples')[0].click()
        _wait(browser, lambda d: _css(d, '#photo img'), 'the example photo')
        _wait(browser, lambda d: _css(d, '#sentences textarea')[0].get_attribute('value')
              == example_text, 'the example sentences')
        overlays = _run_and_wait_for(browser, 2)
        assert [(ow, oh) for ow, oh, _ in overlays] == [(ew, eh)] * 2
        assert example_text.splitlines()[0] in overlays[0][2]

        # 1. a photo and two sentences: two overlays at the photo's displayed size
        _css(browser, '#photo button[aria-label="Remove Image"]')[0].click()
        _upload(browser, photo)
        _type(browser, 'the red circle\nthe small square on the left')
        overlays = _run_and_wait_for(browser, 2, (w, h))
        assert [(ow, oh) for ow, oh, _ in overlays] == [(w, h)] * 2, overlays
        assert 'the red circle' in overlays[0][2]
        assert 'the small square on the left' in overlays[1][2]
        status = _css(browser, '#status')[0].text
        assert f'2 sentence(s) on a {w} x {h} photo' in status, status

        # the masks download as binary PNGs of the same size
        links = _wait(browser, lambda d: [a.get_attribute('href') for a in _css(d, '#masks a')
                                          if (a.get_attribute('href') or '').endswith('.png')],
                      'the mask downloads')
        assert len(links) == 2, links
        for link in links:
            mask = np.asarray(Image.open(io.BytesIO(server.fetch(link))))
            assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}

        # the routing of each sentence: a chart and its numbers
        chart = _wait(browser, lambda d: _css(d, '#routing-plot img'), 'the routing chart')[0]
        cw, ch = browser.execute_script('return [arguments[0].naturalWidth, '
                                        'arguments[0].naturalHeight]', chart)
        assert cw > 300 and ch > 150 and chart.is_displayed()
        routing = _css(browser, '#routing-text')[0].text
        for needle in ('the red circle', 'the small square on the left', 'level 0',
                       'adapter block', 'between the 2 sentences'):
            assert needle in routing, routing
        browser.save_screenshot(str(tmp_path / 'webui.png'))

        # 2. bad requests: a message on the page, the server keeps serving
        _type(browser, '')
        _css(browser, '#run')[0].click()
        _toast(browser, 'Type a sentence describing the object')
        # the previous request's results do not stay under the error
        _wait(browser, lambda d: not _css(d, '#overlays button.thumbnail-item')
              and not _css(d, '#masks a') and not _css(d, '#status')[0].text.strip()
              and not [p for p in _css(d, '#routing-plot img') if p.is_displayed()]
              and not _css(d, '#routing-text')[0].text.strip(), 'the old results cleared')
        _dismiss_toasts(browser)

        broken = tmp_path / 'broken.jpg'
        broken.write_bytes(b'this is not a picture')
        _css(browser, '#photo button[aria-label="Remove Image"]')[0].click()
        _css(browser, '#photo input[type=file]')[0].send_keys(str(broken))
        time.sleep(1)  # a broken file shows no preview; give the upload its time
        _type(browser, 'the red circle')
        _css(browser, '#run')[0].click()
        message = _toast(browser, 'Cannot read the photo')[0]
        assert 'broken.jpg' in message and 'cannot decode image' in message, message
        _dismiss_toasts(browser)

        _css(browser, '#photo button[aria-label="Remove Image"]')[0].click()
        _css(browser, '#run')[0].click()
        _toast(browser, 'Upload a photo first')
        _dismiss_toasts(browser)
        assert server.alive()

        # 3. the next good request works: three sentences, three overlays
        _upload(browser, photo)
        _type(browser, 'the red circle\nthe blue triangle\nthe biggest shape')
        overlays = _run_and_wait_for(browser, 3)
        assert [(ow, oh) for ow, oh, _ in overlays] == [(w, h)] * 3
        assert 'the biggest shape' in _css(browser, '#routing-text')[0].text
        assert server.alive()

        # nothing the page asked for left this machine's server
        elsewhere = [u for u in requested_urls(browser)
                     if not re.match(rf'(http://127\.0\.0\.1:{server.port}/|data:|blob:)', u)]
        assert elsewhere == []


@pytest.mark.integration
def test_detris_page_says_routing_is_not_available(browser, synthetic_refer, phone_photo,
                                                   tmp_path):
    from sera_mm.apis import init_model
    torch.manual_seed(0)
    checkpoint = str(tmp_path / 'detris_tiny.pth')
    torch.save(dict(state_dict=init_model(DETRIS_TINY).state_dict(), meta=dict(epoch=0)),
               checkpoint)
    photo, (w, h) = phone_photo
    with WebUIServer(DETRIS_TINY, checkpoint, str(tmp_path), ['--examples', '']) as server:
        browser.get(server.url)
        _wait(browser, lambda d: _css(d, '#run'), 'the page')
        assert NO_ROUTING_TEXT in _css(browser, '#routing-text')[0].text
        _upload(browser, photo)
        _type(browser, 'the red circle')
        overlays = _run_and_wait_for(browser, 1)
        assert overlays[0][:2] == (w, h)
        assert NO_ROUTING_TEXT in _css(browser, '#routing-text')[0].text
        assert not [p for p in _css(browser, '#routing-plot img') if p.is_displayed()]


# -- the request handler without a browser -------------------------------------
@pytest.fixture(scope='module')
def webui():
    return load_tool('webui.py')


def test_sentences_one_per_line(webui):
    assert webui.parse_sentences('  a\n\n b \r\nc') == (['a', 'b', 'c'], 0)
    lines = '\n'.join(f's{i}' for i in range(webui.MAX_SENTENCES + 2))
    sentences, skipped = webui.parse_sentences(lines)
    assert len(sentences) == webui.MAX_SENTENCES and skipped == 2
    for empty in ('', '  \n ', None):
        with pytest.raises(webui.RequestError, match='Type a sentence'):
            webui.parse_sentences(empty)


def test_examples_are_held_out_images_with_two_sentences(webui, synthetic_refer):
    examples = webui.find_examples(synthetic_refer, count=3)
    assert 1 <= len(examples) <= 3
    for path, sentences in examples:
        assert osp.isfile(path) and len(sentences.splitlines()) == 2
    assert webui.find_examples('') == [] and webui.find_examples('/nowhere') == []


def test_segmenter_requests(webui, tiny_model_files, phone_photo, tmp_path):
    from sera_mm.apis import init_model
    config, checkpoint, _ = tiny_model_files
    segmenter = webui.Segmenter(init_model(config, checkpoint), str(tmp_path))
    photo, (w, h) = phone_photo
    out = segmenter(photo, 'portrait.jpg', 'the red circle\nthe square', 0.5)
    assert out['size'] == (w, h) and len(out['overlays']) == len(out['masks']) == 2
    assert np.asarray(Image.open(out['masks'][0])).shape == (h, w)
    assert len(out['routings']) == 2
    text = webui.routing_markdown(out['sentences'], out['routings'])
    assert 'the square' in text and 'level 0' in text
    fig = webui.routing_figure(out['sentences'], out['routings'])
    assert len(fig.axes) == 2 * 2  # a row per sentence: fusion, adapter
    for args, message in (((None, None, 'x'), 'Upload a photo first'),
                          ((photo, 'p.jpg', '  '), 'Type a sentence'),
                          ((photo, 'p.jpg', 'x', 1.5), 'threshold must be in'),
                          ((__file__, 'notes.jpg', 'x'), 'Cannot read the photo: cannot decode '
                           'image: notes.jpg')):
        with pytest.raises(webui.RequestError, match=message):
            segmenter(*args)
    torch.manual_seed(0)
    detris = webui.Segmenter(init_model(DETRIS_TINY), str(tmp_path / 'detris'))
    out = detris(photo, 'portrait.jpg', 'the red circle')
    assert out['routings'] is None
    assert webui.routing_markdown(out['sentences'], None) == webui.NO_ROUTING


def test_segmenter_serves_two_requests_at_once(webui, tiny_model_files, phone_photo, tmp_path):
    """Two requests in threads, as Gradio runs them: each gets its own
    folder, and the masks and routing it gets when run alone."""
    from sera_mm.apis import init_model
    segmenter = webui.Segmenter(init_model(*tiny_model_files[:2]), str(tmp_path))
    photo, _ = phone_photo
    texts = ['the red circle', 'the square on the left']
    alone = [segmenter(photo, 'p.jpg', text) for text in texts]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda text: segmenter(photo, 'p.jpg', text), texts))
    assert len({osp.dirname(out['masks'][0]) for out in alone + together}) == 4
    for one, both in zip(alone, together):
        assert np.array_equal(np.asarray(Image.open(one['masks'][0])),
                              np.asarray(Image.open(both['masks'][0])))
        assert both['routings'] == [{group: [dict(e, weights=pytest.approx(e['weights']))
                                             for e in entries]
                                     for group, entries in one['routings'][0].items()}]


@pytest.mark.integration
def test_page_answers_not_in_the_picture_and_serves_the_next_request(
        browser, phone_photo, tmp_path):
    """A model with a presence head (the tiny GRES config; its threshold set
    to 0 so that every sentence is "no target"): the page answers "not in
    the picture" with the head's probability, and keeps serving."""
    from sera_mm.apis import init_model
    config = osp.join(REPO, 'configs', 'gres', 'sera-tiny_synthetic-gres.py')
    torch.manual_seed(0)
    checkpoint = str(tmp_path / 'gres_random.pth')
    torch.save(dict(state_dict=init_model(config).state_dict(), meta=dict(epoch=0)), checkpoint)
    photo, (w, h) = phone_photo
    with WebUIServer(config, checkpoint, str(tmp_path),
                     ['--cfg-options', 'model.test_cfg.no_target_threshold=0.0']) as server:
        browser.get(server.url)
        _wait(browser, lambda d: _css(d, '#run'), 'the page')
        _upload(browser, photo)
        _type(browser, 'the purple star')
        overlays = _run_and_wait_for(browser, 1, (w, h))
        assert '"the purple star": not in the picture (p = ' in overlays[0][2], overlays
        status = _wait(browser, lambda d: _css(d, '#status')[0].text, 'the status line')
        assert '"the purple star": not in the picture (p = ' in status, status
        _type(browser, 'the green moon\nall the blue hexagons')
        overlays = _run_and_wait_for(browser, 2, (w, h))
        assert [o[2].split(':')[0] for o in overlays] == ['"the green moon"',
                                                           '"all the blue hexagons"']
        assert all('not in the picture' in o[2] for o in overlays)
        assert server.alive()
