"""A real browser for the web demo's tests: Debian's headless Chromium driven
by Selenium, and tools/webui.py started as a user starts it.

Chromium and ChromeDriver come from apt (``chromium``, ``chromium-driver``:
/usr/bin/chromium, /usr/bin/chromedriver), Selenium from
sera_mm's extra ``webui``; ``make test-deps`` installs all three (``make
test`` runs it first). Nothing is downloaded at run time: Selenium Manager
is kept offline and given both paths, and the browser resolves no host but
127.0.0.1 (so a page that reached for the network would fail here, not
quietly phone out).
"""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import time
import urllib.request
from typing import List, Optional, Sequence

from .paths import REPO

CHROMIUM = os.environ.get('SERA_CHROMIUM', '/usr/bin/chromium')
CHROMEDRIVER = os.environ.get('SERA_CHROMEDRIVER', '/usr/bin/chromedriver')
HOW_TO_INSTALL = ("run 'make test-deps' (apt-get install chromium chromium-driver; pip install "
                  '-c requirements/constraints.txt -e ".[webui]")')
#: Seconds for tools/webui.py to import, load the model and serve.
SERVER_START_S = 240


class BrowserUnavailable(RuntimeError):
    """Chromium, ChromeDriver or Selenium is missing or does not start."""


def chromium_options(window: Sequence[int] = (1400, 1000)):
    """Headless Chromium options: no sandbox (tests run as root), no GPU,
    no background traffic, every host but 127.0.0.1 unresolvable, the
    network log on (see :func:`requested_urls`)."""
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                f'--window-size={window[0]},{window[1]}', '--hide-scrollbars',
                '--force-device-scale-factor=1', '--lang=en-US',
                '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--disable-default-apps', '--disable-extensions',
                '--no-first-run', '--no-default-browser-check', '--metrics-recording-only',
                '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
    return options


def start_chromium(window: Sequence[int] = (1400, 1000)):
    """A Selenium WebDriver on headless Chromium.

    Raises:
        BrowserUnavailable: Selenium, the browser or the driver is missing or
            fails to start; the message says which and how to install them.
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise BrowserUnavailable(f'selenium is not installed ({e}): {HOW_TO_INSTALL}') from None
    for name, path in (('Chromium', CHROMIUM), ('ChromeDriver', CHROMEDRIVER)):
        if not (osp.isfile(path) and os.access(path, os.X_OK)):
            raise BrowserUnavailable(f'{name} not found at {path}: {HOW_TO_INSTALL}')
    os.environ['SE_OFFLINE'] = 'true'  # Selenium Manager: never download a driver
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=chromium_options(window))
    except Exception as e:
        raise BrowserUnavailable(f'headless Chromium ({CHROMIUM} with {CHROMEDRIVER}) did not '
                                 f'start: {str(e).strip().splitlines()[0]}; {HOW_TO_INSTALL}') \
            from e


def requested_urls(driver) -> List[str]:
    """Every URL the page requested since the last call (the network log)."""
    urls = []
    for entry in driver.get_log('performance'):
        message = json.loads(entry['message'])['message']
        if message.get('method') == 'Network.requestWillBeSent':
            urls.append(message['params']['request']['url'])
    return urls


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class WebUIServer:
    """``python tools/webui.py CONFIG CHECKPOINT --port PORT ...`` in the
    repository root, as a user starts it; a context manager that waits for
    the page and stops the server (its own process, by id) on exit.

    Args:
        config, checkpoint (str): The model.
        work_dir (str): Gradio's file cache and the server's log go here.
        extra_args (Sequence[str]): More arguments of tools/webui.py.
    """

    def __init__(self, config: str, checkpoint: str, work_dir: str,
                 extra_args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}/'
        self.log_path = osp.join(work_dir, f'webui_{self.port}.log')
        self.cmd = [sys.executable, osp.join(REPO, 'tools', 'webui.py'), config, checkpoint,
                    '--port', str(self.port), *extra_args]
        self.env = dict(os.environ, GRADIO_TEMP_DIR=osp.join(work_dir, 'gradio'),
                        GRADIO_ANALYTICS_ENABLED='False', MPLBACKEND='Agg',
                        PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]),
                        OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', NO_PROXY='127.0.0.1,localhost',
                        no_proxy='127.0.0.1,localhost')
        self.proc: Optional[subprocess.Popen] = None

    def log(self) -> str:
        try:
            with open(self.log_path, encoding='utf-8', errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def __enter__(self) -> 'WebUIServer':
        self._log_file = open(self.log_path, 'w')
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f'tools/webui.py exited with {self.proc.returncode} '
                                     f'before serving:\n{self.log()[-4000:]}')
            try:
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(self.url, timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(1)
        self.__exit__(None, None, None)
        raise AssertionError(f'tools/webui.py did not serve {self.url} within '
                             f'{SERVER_START_S} s:\n{self.log()[-4000:]}')

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fetch(self, url: str) -> bytes:
        """GETs a URL of the server (a downloaded file), without any proxy."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=30) as response:
            return response.read()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self._log_file.close()
