"""A bare GPU machine's path: sera_mm on mmcv-lite, the carried wheels and
their bootstrap, and benchmark_gpu.sh's dry run in a venv holding only torch
and torchvision, with no package index.

The bare-venv test uses what ``make device-wheels`` builds (a step of ``make
test``): the wheel folders of tools/analysis_tools/prepare_device.sh and a
Python 3.12 venv with torch 2.11.0 + torchvision 0.26.0, the GPU machines'
versions; it skips, saying so, where they are missing.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest

from helpers.tool_runner import REPO, load_tool

db = load_tool('analysis_tools/device_bootstrap.py')
TORCH_VENV = osp.join(REPO, '.venv-torch2.11')
WHEELS = osp.join(REPO, '.device', 'wheels')
BASE_WHEELS = osp.join(REPO, '.device', 'base-wheels')
CARRY_LIMIT = 64 * 2**20


def _requirement_lines(name: str):
    return db.read_roots(osp.join(REPO, 'requirements', name))


def test_roots_are_the_projects_stack_with_mmcv_lite():
    """requirements/device.txt cannot drift from mminstall.txt, runtime.txt
    and the setuptools pin of constraints.txt: only mmcv becomes mmcv-lite."""
    expected = [r.replace('mmcv==', 'mmcv-lite==') for r in _requirement_lines('mminstall.txt')]
    expected += _requirement_lines('runtime.txt')
    expected += [r for r in _requirement_lines('constraints.txt') if r.startswith('setuptools')]
    assert sorted(_requirement_lines('device.txt')) == sorted(expected)


def test_lock_and_base_pin_every_root():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    pins = {}
    for name in ('device-lock.txt', 'device-base.txt'):
        for line in _requirement_lines(name):
            req = Requirement(line)
            assert str(req.specifier).startswith('=='), line  # exact pins only
            key = db.group(canonicalize_name(req.name))
            assert key not in pins, f'{line}: pinned twice'
            pins[key] = req.specifier
    for line in _requirement_lines('device.txt'):
        req = Requirement(line)
        key = db.group(canonicalize_name(req.name))
        if key == 'numpy':  # a requirement of torchvision: every target machine has it
            continue
        assert key in pins, f'{line}: not in device-lock.txt or device-base.txt'
        version = str(pins[key]).lstrip('=')
        assert req.specifier.contains(version, prereleases=True), (line, version)


# -- the plan, on made-up wheels and installed distributions -------------------------
def _wheel(folder, name: str, version: str, requires=(), tag: str = 'py3-none-any') -> str:
    dist = f"{name.replace('-', '_')}-{version}"
    path = osp.join(folder, f'{dist}-{tag}.whl')
    meta = f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n' + ''.join(
        f'Requires-Dist: {r}\n' for r in requires) + '\nA description: not a header\n'
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr(f'{dist}.dist-info/METADATA', meta)
    return path


def _installed(site, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')


@pytest.fixture
def made_up(tmp_path, monkeypatch):
    """A wheel folder and a site folder, the only installed distributions
    the plan sees; returns (wheels dir, site dir, plan(roots) -> (chosen
    wheel files, present, unmet))."""
    wheels, site = tmp_path / 'wheels', tmp_path / 'site'
    wheels.mkdir()
    site.mkdir()
    pk = db.import_packaging([str(wheels)])

    def plan(roots):
        with monkeypatch.context() as m:
            m.setattr(sys, 'path', [str(site)])  # not this venv's packages
            chosen, present, unmet = db.plan(roots, db.find_wheels([str(wheels)], pk), pk)
        return [osp.basename(w.path) for w in chosen.values()], present, unmet

    return wheels, site, plan


def test_plan_installs_what_is_missing_with_its_needs(made_up):
    wheels, site, plan = made_up
    _wheel(wheels, 'alpha-zz', '1.0', ['beta-zz>=2', 'gamma-zz; python_version < "3"',
                                       'delta-zz; extra == "docs"'])
    _wheel(wheels, 'beta-zz', '2.1')
    _wheel(wheels, 'beta-zz', '1.0')
    _wheel(wheels, 'beta-zz', '3.0', tag='cp27-cp27m-manylinux1_x86_64')  # not for this Python
    _wheel(wheels, 'gamma-zz', '1.0')
    _wheel(wheels, 'delta-zz', '1.0')
    chosen, present, unmet = plan(['alpha-zz==1.0'])
    # markers are evaluated: no gamma (old Pythons only), no delta (an extra)
    assert chosen == ['alpha_zz-1.0-py3-none-any.whl', 'beta_zz-2.1-py3-none-any.whl']
    assert unmet == [] and present == {}


def test_plan_keeps_what_the_machine_has_unless_a_pin_rules_it_out(made_up):
    wheels, site, plan = made_up
    _wheel(wheels, 'alpha-zz', '1.0', ['beta-zz>=2'])
    _wheel(wheels, 'beta-zz', '2.1')
    _installed(site, 'beta-zz', '2.0')
    chosen, present, _ = plan(['alpha-zz'])
    assert chosen == ['alpha_zz-1.0-py3-none-any.whl'] and present == {'beta-zz': 'beta-zz 2.0'}
    chosen, present, _ = plan(['alpha-zz', 'beta-zz>2.0'])  # a later, stricter requirement
    assert [c.split('-')[0] for c in chosen] == ['alpha_zz', 'beta_zz'] and present == {}


def test_plan_names_each_unmet_requirement_and_who_asked(made_up):
    wheels, site, plan = made_up
    _wheel(wheels, 'alpha-zz', '1.0', ['beta-zz>=3', 'omega-zz'])
    _wheel(wheels, 'beta-zz', '2.1')
    _installed(site, 'beta-zz', '2.0')
    _, _, unmet = plan(['alpha-zz'])
    assert unmet == [
        'beta-zz>=3 (asked by alpha-zz 1.0; this machine has beta-zz 2.0; wheels: 2.1)',
        'omega-zz (asked by alpha-zz 1.0; not installed; wheels: none)']


def test_any_opencv_meets_opencv_and_full_mmcv_meets_mmcv_lite(made_up):
    wheels, site, plan = made_up
    _wheel(wheels, 'mmthing-zz', '1.0', ['opencv-python>=3', 'mmcv-lite==2.1.0'])
    _wheel(wheels, 'opencv-python-headless', '5.1.0.95')
    _wheel(wheels, 'mmcv-lite', '2.1.0')
    chosen, _, unmet = plan(['mmthing-zz'])
    assert [c.split('-')[0] for c in chosen] == ['mmthing_zz', 'opencv_python_headless',
                                                 'mmcv_lite'] and unmet == []
    _installed(site, 'opencv-contrib-python', '4.10.0')
    _installed(site, 'mmcv', '2.1.0')
    chosen, present, _ = plan(['mmthing-zz'])
    assert [c.split('-')[0] for c in chosen] == ['mmthing_zz']
    assert present == {'opencv-python': 'opencv-contrib-python 4.10.0',
                       'mmcv-lite': 'mmcv 2.1.0'}


# -- sera_mm on mmcv-lite ----------------------------------------------------------------
def _compiled_ops() -> bool:
    from sera_mm.mmcv_lite import has_compiled_ops
    return has_compiled_ops()


@pytest.mark.skipif(not _compiled_ops(), reason='mmcv-lite here (make test-torch2.11)')
def test_the_lite_hook_leaves_the_full_mmcv_alone():
    import mmcv.ops

    from sera_mm.mmcv_lite import LiteOpsFinder
    assert any(isinstance(f, LiteOpsFinder) for f in sys.meta_path)
    assert hasattr(mmcv.ops, 'nms') and hasattr(mmcv.ops, 'SyncBatchNorm')


@pytest.mark.skipif(_compiled_ops(), reason='the full mmcv here (make test)')
def test_on_mmcv_lite_mmcv_ops_is_the_hooks():
    import mmcv.ops
    assert mmcv.ops.__doc__.startswith('mmcv.ops of mmcv-lite, filled by sera_mm.mmcv_lite')
    assert sorted(mmcv.ops.__all__) == ['point_sample', 'sigmoid_focal_loss']
    with pytest.raises(ModuleNotFoundError, match='mmcv._ext'):
        mmcv.ops.nms


#: Runs where mmcv is a copy of the installed one without its compiled
#: extension (what mmcv-lite is), on the toy configs.
LITE_CODE = r'''
import sys
import sera_mm
from sera_mm import register_all_modules
from sera_mm.mmcv_lite import has_compiled_ops
import mmcv, mmcv.ops
assert mmcv.__file__.startswith(sys.argv[1]), mmcv.__file__
assert not has_compiled_ops()
register_all_modules()
import mmpretrain.models, mmseg.models  # every module-level mmcv.ops import of both
from mmengine.utils.dl_utils import mmcv_full_available
assert not mmcv_full_available()
import torch
from mmseg.utils.mask_classification import point_sample  # mmseg's own import of it
assert point_sample.__module__ == 'mmcv.ops.point_sample'
out = point_sample(torch.arange(16.).view(1, 1, 4, 4), torch.full((1, 1, 2), 0.5))
assert out.shape == (1, 1, 1) and torch.isfinite(out).all()
try:
    mmcv.ops.sigmoid_focal_loss(torch.zeros(1, 1), torch.zeros(1).long())
except RuntimeError as exc:
    assert "compiled ops" in str(exc) and 'tools/install.sh' in str(exc), exc
else:
    raise AssertionError('sigmoid_focal_loss ran without mmcv._ext')
for name in ('nms', 'SyncBatchNorm', 'MultiScaleDeformableAttention'):
    try:
        exec(f'from mmcv.ops import {name}')
    except ModuleNotFoundError as exc:  # what mmcv-lite raises: guarded imports catch it
        assert exc.name == 'mmcv._ext', exc
    else:
        raise AssertionError(name)
sys.path.insert(0, 'tools/analysis_tools')
import benchmark as bm
for config in ('configs/synthetic/sera-tiny_synthetic.py',
               'configs/synthetic/detris-tiny_synthetic.py'):
    model, _ = bm.build_benchmark_model(config, img_size=112)
    batch = bm.make_synthetic_batch(model, 2, 112, seed=0)
    bm.train_step(model, batch)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    bm.forward_step(model, batch, False, 'predict')
assert 'mmcv._ext' not in sys.modules
print('LITE OK')
'''


def test_sera_mm_trains_and_predicts_without_mmcvs_compiled_ops(tmp_path):
    """Fails when sera_mm, or mmseg or mmpretrain on its import path, starts
    needing one of mmcv's compiled ops, or when mmseg imports another one
    unguarded (the bare-venv test below runs the tools on the real
    mmcv-lite)."""
    import mmcv
    lite = tmp_path / 'lite'
    shutil.copytree(osp.dirname(mmcv.__file__), lite / 'mmcv',
                    ignore=shutil.ignore_patterns('_ext*', 'csrc', '__pycache__'))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(lite), REPO]), OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', LITE_CODE, str(lite)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    assert proc.returncode == 0 and 'LITE OK' in proc.stdout, proc.stdout[-5000:]


# -- a bare venv, no index --------------------------------------------------------------
#: Lists torch's and torchvision's distributions (with their needs, and pip)
#: and the top-level entries of their files, in the venv that holds them.
VIEW_CODE = r'''
import importlib.metadata as md, json, os
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name
todo, seen = [('torch', ()), ('torchvision', ()), ('pip', ())], {}
while todo:
    name, extras = todo.pop()
    dist = md.distribution(name)
    key = canonicalize_name(name)
    if key in seen and set(extras) <= seen[key]:
        continue
    seen[key] = seen.get(key, set()) | set(extras)
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({'extra': e})
                                     for e in ('',) + tuple(extras)):
            todo.append((req.name, tuple(req.extras)))
tops = set()
for key in seen:
    dist = md.distribution(key)
    tops.add(os.path.basename(str(dist._path)))
    tops.update(f.parts[0] for f in dist.files or [] if f.parts[0] not in ('..', '__pycache__'))
print(json.dumps(dict(site=os.path.dirname(str(dist._path)), tops=sorted(tops))))
'''


def make_torch_only_venv(folder: str) -> str:
    """A Python 3.12 venv whose only packages are torch, torchvision, their
    needs and pip, linked from .venv-torch2.11; returns its python."""
    src = osp.join(TORCH_VENV, 'bin', 'python')
    out = subprocess.run([src, '-c', VIEW_CODE], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    view = json.loads(out)
    packages = osp.join(folder, 'torch_only')
    os.makedirs(packages)
    for top in view['tops']:
        os.symlink(osp.join(view['site'], top), osp.join(packages, top))
    venv = osp.join(folder, 'venv')
    base = subprocess.run([src, '-c', 'import sys; print(sys._base_executable)'], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()
    subprocess.run([base, '-m', 'venv', '--without-pip', venv], check=True)
    site = subprocess.run([osp.join(venv, 'bin', 'python'), '-c',
                           'import sysconfig; print(sysconfig.get_path("purelib"))'],
                          check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    with open(osp.join(site, 'torch_only.pth'), 'w') as f:
        # a site directory, as where they are installed: its .pth files count
        # (setuptools' distutils-precedence.pth: Python 3.12 has no distutils)
        f.write(f'import site; site.addsitedir({packages!r})\n')
    return osp.join(venv, 'bin', 'python')


@pytest.mark.integration
def test_bare_venv_bootstraps_from_the_wheels_and_passes_the_dry_run(tmp_path):
    missing = [p for p in (osp.join(TORCH_VENV, 'bin', 'python'), WHEELS, BASE_WHEELS)
               if not osp.exists(p)]
    if missing:
        pytest.skip(f'{missing} missing: run `make device-wheels` (a step of make test)')
    folder = sum(e.stat().st_size for e in os.scandir(WHEELS))
    assert folder <= CARRY_LIMIT, f'.device/wheels is {folder / 2**20:.1f} MiB'
    python = make_torch_only_venv(str(tmp_path))
    probe = subprocess.run([python, '-c', 'import torch, torchvision, sys; '
                            'print(sys.version_info[:2], torch.__version__); import mmengine'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert "(3, 12) 2.11.0" in probe.stdout and "No module named 'mmengine'" in probe.stdout
    site, out = tmp_path / 'site', tmp_path / 'out'
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('PIP_', 'PYTHON', 'VIRTUAL_ENV'))}
    # no index, no find-links, none of this machine's pip configuration
    env.update(PYTHON=python, SERA_DEVICE_SITE=str(site), PIP_CONFIG_FILE=os.devnull,
               PIP_NO_INDEX='1', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run(
        ['bash', 'tools/analysis_tools/benchmark_gpu.sh', '--dry-run', '--out-dir', str(out),
         '--peak-tflops', '1'],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'wheels to install' in proc.stdout and '(lite: no compiled ops)' in proc.stdout
    assert (site / 'mmcv').is_dir() and (site / 'mmseg').is_dir()
    assert not (site / 'torch').exists()  # the machine's own torch is kept
    data = json.loads((out / 'benchmark_gpu.json').read_text())
    assert all(leg['status'] == 'ok' for leg in data['legs']), data['legs']
    env_leg = data['environment']
    assert env_leg['python'].startswith('3.12.') and env_leg['torch'].startswith('2.11.0')
    assert env_leg['stack']['mmcv_compiled_ops'] is False
    assert env_leg['stack']['site'] == str(site)
    assert set(data['train']) == {'sera b2', 'detris b2', 'sera b4', 'detris b4'}
    assert all(t['samples_per_s'] > 0 and t['mfu'] > 0 for t in data['train'].values())
