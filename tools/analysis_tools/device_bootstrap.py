"""Install what sera_mm needs, from carried wheels, with no package index.

For a machine that brings Python, torch and torchvision but not the
OpenMMLab stack, and reaches no index (a rented GPU machine):
``tools/analysis_tools/benchmark_gpu.sh`` calls it there before measuring.
It reads the roots (``requirements/device.txt``), walks their requirements
through the wheels' metadata, keeps every requirement the machine already
meets, and installs the wheels of the rest with ``pip install --no-index
--no-deps`` into ``--target`` (then put that folder on ``PYTHONPATH``) or,
without ``--target``, into the running environment. Before installing
anything it fails, naming each requirement and who asked for it, when
neither the machine nor the wheel folders meet it.

The wheel folders are built here by ``tools/analysis_tools/prepare_device.sh``
(``.device/wheels``, the one that travels, and ``.device/base-wheels``:
OpenCV and SciPy, too large to travel, for a machine without them). Only
standard-library code runs before ``packaging`` is found (the machine's, or
the carried wheel's, imported from the zip).

Two equivalences that pip does not know: any OpenCV distribution
(``opencv-python``, ``-headless``, ``opencv-contrib-python[-headless]``)
meets a requirement on another, as all install the same ``cv2``; and the
full ``mmcv`` meets a requirement on ``mmcv-lite`` of the same version (it
is mmcv-lite plus the compiled ops).

Examples::

    python tools/analysis_tools/device_bootstrap.py --target /tmp/sera_mm_site --check
    export PYTHONPATH=/tmp/sera_mm_site
    python tools/analysis_tools/device_bootstrap.py --dry-run   # the plan only
"""
import argparse
import glob
import importlib.metadata
import os
import os.path as osp
import subprocess
import sys
import time
import zipfile
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
#: The roots: what sera_mm imports, with the pins of the project's stack.
ROOTS_FILE = osp.join(REPO, 'requirements', 'device.txt')
#: The wheel folders, in the order they are searched.
WHEEL_DIRS = (osp.join(REPO, '.device', 'wheels'), osp.join(REPO, '.device', 'base-wheels'))
#: Distributions of ``cv2``: one meets a requirement on any other.
OPENCV = ('opencv-python', 'opencv-python-headless', 'opencv-contrib-python',
          'opencv-contrib-python-headless')
#: Installed distributions that also meet a requirement on the key.
ALSO_MEETS = {'mmcv-lite': ('mmcv', )}
#: What --check imports (in a fresh process, with the new PYTHONPATH).
CHECK_CODE = """
import sera_mm
from sera_mm import register_all_modules
from sera_mm.mmcv_lite import has_compiled_ops
register_all_modules()
import cv2, mmcv, mmengine, mmpretrain.models, mmseg, mmseg.models, open_clip, torch
from mmengine.utils.dl_utils import collect_env
collect_env()  # what the Runner logs first (distutils on Python 3.12: setuptools' hack)
print('[bootstrap] check: torch', torch.__version__, '| mmcv', mmcv.__version__,
      '(compiled ops)' if has_compiled_ops() else '(lite: no compiled ops)',
      '| mmengine', mmengine.__version__, '| mmseg', mmseg.__version__,
      '| open_clip', open_clip.__version__, '| cv2', cv2.__version__,
      '| sera_mm', sera_mm.__version__)
"""


def log(msg: str) -> None:
    print(f'[bootstrap] {msg}', flush=True)


def import_packaging(dirs: Sequence[str]):
    """``packaging`` (requirements, markers, wheel tags): the machine's, else
    the carried wheel's, imported from the zip (it is pure Python)."""
    try:
        import packaging.requirements  # noqa: F401
    except ImportError:
        wheels = [w for d in dirs for w in sorted(glob.glob(osp.join(d, 'packaging-*.whl')))]
        if not wheels:
            raise SystemExit('[bootstrap] ERROR: neither this Python nor the wheel folders '
                             f'{list(dirs)} have `packaging`; rebuild the folder with '
                             'tools/analysis_tools/prepare_device.sh')
        sys.path.insert(0, wheels[-1])
    import packaging.requirements
    import packaging.tags
    import packaging.utils
    import packaging.version
    # the zip must not count as an installed `packaging` (importlib.metadata)
    sys.path[:] = [p for p in sys.path if not p.endswith('.whl')]
    return packaging


class Wheel:
    """A wheel file: name, version, and (read when first asked) its
    ``Requires-Dist`` lines."""

    def __init__(self, path: str, name: str, version):
        self.path, self.name, self.version = path, name, version
        self._requires: Optional[List[str]] = None

    @property
    def requires(self) -> List[str]:
        if self._requires is None:
            with zipfile.ZipFile(self.path) as zf:
                meta = next(n for n in zf.namelist()
                            if n.count('/') == 1 and n.endswith('.dist-info/METADATA'))
                text = zf.read(meta).decode('utf-8')
            headers = text.split('\n\n', 1)[0].splitlines()
            self._requires = [h.split(':', 1)[1].strip() for h in headers
                              if h.startswith('Requires-Dist:')]
        return self._requires


def find_wheels(dirs: Sequence[str], pk) -> Dict[str, List[Wheel]]:
    """The wheels of ``dirs`` that this interpreter can install, by
    :func:`group` of their name, newest first."""
    supported = set(pk.tags.sys_tags())
    found: Dict[str, List[Wheel]] = {}
    for d in dirs:
        for path in sorted(glob.glob(osp.join(d, '*.whl'))):
            name, version, _, tags = pk.utils.parse_wheel_filename(osp.basename(path))
            if supported.isdisjoint(tags):
                continue
            found.setdefault(group(name), []).append(Wheel(path, name, version))
    for wheels in found.values():
        wheels.sort(key=lambda w: w.version, reverse=True)
    return found


def read_roots(path: str) -> List[str]:
    """The requirement lines of ``path`` (comments and blank lines dropped)."""
    with open(path) as f:
        return [line.split('#', 1)[0].strip() for line in f
                if line.split('#', 1)[0].strip()]


def group(name: str) -> str:
    """The key a normalised distribution name is planned under: one for
    every OpenCV distribution, the name itself otherwise."""
    return OPENCV[0] if name in OPENCV else name


def installed_version(name: str, pk) -> Optional[Tuple[str, object]]:
    """(distribution, version) of ``name`` (a :func:`group` key) or of what
    also meets it, already on ``sys.path``; None when absent."""
    for dist in (OPENCV if name == OPENCV[0] else (name, )) + ALSO_MEETS.get(name, ()):
        try:
            return dist, pk.version.Version(importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def plan(roots: Sequence[str], wheels: Dict[str, List[Wheel]], pk
         ) -> Tuple['OrderedDict[str, Wheel]', Dict[str, str], List[str]]:
    """Which wheels to install for ``roots``.

    Returns:
        tuple: the wheels to install (by name), what the machine already
        meets (name -> 'dist version'), and the unmet requirements (each
        with who asked for it).
    """
    queue = [(pk.requirements.Requirement(r), 'requirements/device.txt') for r in roots]
    specs: Dict[str, list] = {}
    chosen: 'OrderedDict[str, Wheel]' = OrderedDict()
    present: Dict[str, str] = {}
    while queue:
        req, parent = queue.pop(0)
        if req.marker is not None and not any(
                req.marker.evaluate({'extra': e}) for e in ('', ) + tuple(sorted(req.extras))):
            continue
        name = group(pk.utils.canonicalize_name(req.name))
        specs.setdefault(name, []).append((req, parent))
        if name in chosen:
            continue
        if name in present:  # kept unless this requirement rules the version out
            if all(r.specifier.contains(installed_version(name, pk)[1], prereleases=True)
                   for r, _ in specs[name]):
                continue
            del present[name]
        have = installed_version(name, pk)
        if have and all(r.specifier.contains(have[1], prereleases=True)
                        for r, _ in specs[name]):
            present[name] = f'{have[0]} {have[1]}'
            continue
        wheel = next((w for w in wheels.get(name, ())
                      if all(r.specifier.contains(w.version, prereleases=True)
                             for r, _ in specs[name])), None)
        if wheel is None:
            continue  # reported below
        chosen[name] = wheel
        for line in wheel.requires:
            dep = pk.requirements.Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({'extra': e})
                                         for e in ('', ) + tuple(sorted(req.extras))):
                queue.append((dep, f'{wheel.name} {wheel.version}'))
    unmet = []
    for name, reqs in specs.items():
        if name in present:
            continue
        version = chosen[name].version if name in chosen else None
        for req, parent in reqs:
            if version is None or not req.specifier.contains(version, prereleases=True):
                have = installed_version(name, pk)
                where = f'this machine has {have[0]} {have[1]}' if have else 'not installed'
                offered = ', '.join(str(w.version) for w in wheels.get(name, ())) or 'none'
                unmet.append(f'{req} (asked by {parent}; {where}; wheels: {offered})')
    return chosen, present, unmet


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--wheels', action='append', metavar='DIR',
                        help='a wheel folder (repeatable; default: the existing ones of '
                        '.device/wheels and .device/base-wheels)')
    parser.add_argument('--roots', default=ROOTS_FILE,
                        help='the requirements to meet (default requirements/device.txt)')
    parser.add_argument('--target', metavar='DIR',
                        help='install into this folder (pip --target; put it on PYTHONPATH); '
                        'default: into the running environment')
    parser.add_argument('--dry-run', action='store_true', help='print the plan only')
    parser.add_argument('--check', action='store_true',
                        help='then import sera_mm and the stack in a fresh process')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    dirs = args.wheels or [d for d in WHEEL_DIRS if osp.isdir(d)]
    pk = import_packaging(dirs)
    if args.target:
        target = osp.abspath(args.target)
        if target not in [osp.abspath(p) for p in sys.path]:
            sys.path.insert(0, target)  # what an earlier run installed there counts
    wheels = find_wheels(dirs, pk)
    chosen, present, unmet = plan(read_roots(args.roots), wheels, pk)
    log(f'Python {sys.version.split()[0]}; wheel folders: {dirs or "none"}; '
        f'{len(present)} requirements met by this machine, {len(chosen)} wheels to install')
    if unmet:
        log('ERROR: requirements that neither this machine nor the wheel folders meet:')
        for line in unmet:
            log(f'  {line}')
        log('build the folders with tools/analysis_tools/prepare_device.sh (where an index '
            'is reachable) and carry .device/wheels; or install these on the machine')
        return 2
    for name, wheel in chosen.items():
        log(f'  install {osp.basename(wheel.path)}')
    if args.dry_run:
        return 0
    if chosen:
        cmd = [sys.executable, '-m', 'pip', 'install', '--no-index', '--no-deps', '--no-compile',
               '--disable-pip-version-check', '-q']
        if args.target:
            os.makedirs(args.target, exist_ok=True)
            cmd += ['--target', args.target, '--upgrade']
        proc = subprocess.run(cmd + [w.path for w in chosen.values()])
        if proc.returncode:
            log(f'ERROR: pip install exited with {proc.returncode}')
            return proc.returncode
    log(f'installed {len(chosen)} wheels in {time.perf_counter() - start:.1f} s'
        + (f' into {args.target}' if args.target else ''))
    if args.check:
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(
            ([osp.abspath(args.target)] if args.target else []) + [REPO]
            + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
        proc = subprocess.run([sys.executable, '-c', CHECK_CODE], env=env, cwd=REPO)
        if proc.returncode:
            log('ERROR: the installed stack does not import (above)')
            return proc.returncode
    return 0


if __name__ == '__main__':
    sys.exit(main())
