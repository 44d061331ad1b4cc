"""Runs tools/train.py and tools/test.py as a user would: a subprocess of the
venv's python, in the repository root, on the tiny synthetic config."""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys
from types import ModuleType
from typing import List, Optional, Sequence

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TINY_CONFIG = 'configs/synthetic/sera-tiny_synthetic.py'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: Generous wall-clock cap of one tool run (a hang fails instead of blocking).
TOOL_TIMEOUT_S = 300


def load_tool(relpath: str) -> ModuleType:
    """Returns ``tools/<relpath>`` (a script, not a package) as a module, for
    tests that call its functions in the test process."""
    name = osp.splitext(osp.basename(relpath))[0]
    spec = importlib.util.spec_from_file_location(f'{name}_tool', osp.join(REPO, 'tools', relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_options(data_root: str) -> List[str]:
    """``--cfg-options`` that point every loader of the tiny config at
    ``data_root`` and load in the main process."""
    root = data_root.rstrip('/') + '/'
    opts = []
    for loader in LOADERS:
        opts += [f'{loader}.dataset.data_root={root}', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    return opts


def train_options(data_root: str, max_epochs: int = 1) -> List[str]:
    """Data options plus a short schedule: batches of 8 (4 iterations per
    epoch on the fixture's 28 training referents: the last, partial batch is
    kept, unlike the configs' drop_last), logs every iteration."""
    return data_options(data_root) + [
        'train_dataloader.batch_size=8', 'train_dataloader.drop_last=False',
        f'train_cfg.max_epochs={max_epochs}',
        'default_hooks.logger.interval=1'
    ]


def run_tool(tool: str, args: Sequence[str], cfg_options: Sequence[str] = (),
             extra_pythonpath: Optional[str] = None) -> subprocess.CompletedProcess:
    """Runs ``python tools/<tool> ARGS --cfg-options ...`` in the repo root.

    The repo root goes first on PYTHONPATH, so the tools import this
    checkout's ``sera_mm`` whatever is installed. Returns the completed
    process; ``.output`` holds stdout and stderr together.
    """
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    paths = [REPO] + ([extra_pythonpath] if extra_pythonpath else [])
    if env.get('PYTHONPATH'):
        paths.append(env['PYTHONPATH'])
    env['PYTHONPATH'] = os.pathsep.join(paths)
    cmd = [sys.executable, osp.join('tools', tool), *args]
    if cfg_options:
        cmd += ['--cfg-options', *cfg_options]
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=TOOL_TIMEOUT_S)
    proc.output = proc.stdout
    return proc


def explain(proc: subprocess.CompletedProcess, tail: int = 6000) -> str:
    """Assertion message: the command, its exit code and its output's end."""
    return (f'command: {" ".join(proc.args)}\nexit code: {proc.returncode}\n'
            f'--- output (last {tail} chars) ---\n{proc.output[-tail:]}')


def logged_metric(output: str, name: str, mode: str) -> float:
    """The last value of metric ``name`` logged on an ``Epoch(<mode>)`` line."""
    # the name may carry a metric prefix, e.g. 'val/mIoU'
    values = re.findall(rf'Epoch\({mode}\).*?\s(?:[\w.+-]+/)?{re.escape(name)}: ([-\d.]+)',
                        output)
    assert values, f'no {name} logged in Epoch({mode}) lines'
    return float(values[-1])


def weights_only_warnings(output: str) -> List[str]:
    """Lines that report torch.load's weights_only check turned off (or
    unsafe loading), which the safe checkpoint loading must make needless."""
    pattern = re.compile(
        r'weights_only.*(False|disabl|unsafe|trusted)|'
        r'(FutureWarning|UserWarning).*torch\.load', re.IGNORECASE)
    return [line for line in output.splitlines() if pattern.search(line)]
