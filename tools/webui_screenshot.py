"""Takes the README's screenshot of the web demo: the real page, in headless
Chromium, after one request.

Starts ``tools/webui.py CONFIG CHECKPOINT`` on a free local port, opens the
page, picks the first example (a photo of the synthetic set with two
sentences), presses Segment, waits for the overlays and the routing chart
and saves the whole page, shrunk and reduced to 256 colours (a few hundred
KB at most). It then prints what the page said (each overlay's caption, the
status line, how much the routing changed between the sentences), the words
that go beside the picture in the README: the toy model's mistakes (a mask
on every blue shape for "the bottommost blue circle") are shown, not hidden.

Example (after ``make demo`` and ``make test-deps``)::

    python tools/webui_screenshot.py --out docs/en/_static/webui.png

The browser and server helpers are the browser test's
(tests/helpers/browser.py), so the screenshot shows what the test drives.
"""
import argparse
import os.path as osp
import sys
import tempfile
import time

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, osp.join(REPO, 'tests'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Screenshot of the web demo after a request')
    parser.add_argument('--config', default='configs/synthetic/sera-tiny_synthetic.py')
    parser.add_argument('--checkpoint', default='work_dirs/demo/epoch_6.pth')
    parser.add_argument('--examples', default='data/synthetic')
    parser.add_argument('--out', default='docs/en/_static/webui.png')
    parser.add_argument('--width', type=int, default=1100,
                        help='width of the saved picture in pixels (default 1100)')
    return parser.parse_args(argv)


def _wait(driver, condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition(driver)
            if value:
                return value
        except Exception:  # elements re-rendered meanwhile
            pass
        time.sleep(0.25)
    raise SystemExit(f'error: timed out waiting for {what}')


def page_text(driver) -> list:
    """What the page says about the request: each overlay's caption (the
    sentence and its share of the photo, or "not in the picture"), the
    status line and the first line of the routing text."""
    from selenium.webdriver.common.by import By
    css = By.CSS_SELECTOR
    lines = [b.text.strip() for b in driver.find_elements(css, '#overlays button.thumbnail-item')]
    for selector in ('#status', '#routing-text'):
        found = driver.find_elements(css, selector)
        text = found[0].text.strip() if found else ''
        lines += text.splitlines()[:1] if selector == '#routing-text' else text.splitlines()
    return [line for line in lines if line]


def main(argv=None) -> int:
    args = parse_args(argv)
    for name in ('config', 'checkpoint'):
        if not osp.isfile(getattr(args, name)):
            hint = ' (make demo trains it)' if name == 'checkpoint' else ''
            raise SystemExit(f'error: {name} not found: {getattr(args, name)}{hint}')
    from PIL import Image
    from selenium.webdriver.common.by import By

    from helpers.browser import WebUIServer, start_chromium
    css = By.CSS_SELECTOR
    with tempfile.TemporaryDirectory() as work, \
            WebUIServer(args.config, args.checkpoint, work, ['--examples', args.examples]) \
            as server:
        driver = start_chromium(window=(1400, 1000))
        try:
            driver.get(server.url)
            example = _wait(driver, lambda d: d.find_elements(css, '#examples tbody tr'),
                            'the examples')[0]
            example.click()
            _wait(driver, lambda d: d.find_elements(css, '#photo img'), 'the example photo')
            driver.find_element(css, '#run').click()
            _wait(driver, lambda d: len(d.find_elements(css, '#overlays button.thumbnail-item'))
                  >= 1 and d.find_elements(css, '#routing-plot img'), 'the results')
            time.sleep(1.5)  # images decoded, progress bars gone
            said = page_text(driver)
            height = driver.execute_script('return document.documentElement.scrollHeight')
            driver.set_window_size(1400, min(int(height) + 40, 2400))
            time.sleep(0.5)
            shot = osp.join(work, 'page.png')
            driver.save_screenshot(shot)
        finally:
            driver.quit()
        im = Image.open(shot).convert('RGB')
        im = im.resize((args.width, round(im.height * args.width / im.width)), Image.LANCZOS)
        im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f'{args.out}: {im.width} x {im.height}, {osp.getsize(args.out) // 1024} KB; '
          'the page says:')
    for line in said:
        print(f'  {line}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
