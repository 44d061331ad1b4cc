"""Packaging of sera_mm, laid out as the OpenMMLab packages do it.

- The version is read from ``sera_mm/version.py`` (the package itself is not
  imported: its dependencies need not be installed to build it).
- ``install_requires`` comes from ``requirements/mminstall.txt`` and
  ``requirements/runtime.txt``; ``requirements/tests.txt``,
  ``requirements/optional.txt``, ``requirements/webui.txt`` and
  ``requirements/deploy.txt`` are the extras ``tests``, ``optional``,
  ``webui`` and ``deploy`` (ONNX export and ONNX Runtime; ``all``: the four). ``requirements/constraints.txt`` is not read here: it is
  the pip constraints file of ``tools/install.sh``.
- ``configs/`` and ``tools/`` travel with the package as ``sera_mm/.mim/``
  (where OpenMMLab's ``mim`` looks for them): copied into every wheel at
  build time, symlinked into the source tree by an editable install.
  ``sera_mm.get_config_path()`` finds the configs either way.
"""
import os
import os.path as osp
import re
import shutil
from typing import List

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop
from setuptools.command.editable_wheel import editable_wheel

HERE = osp.dirname(osp.abspath(__file__))
#: Top-level folders shipped inside the package as ``sera_mm/.mim/<name>``.
MIM_FOLDERS = ('configs', 'tools')
#: What is not copied into a wheel's ``.mim`` folder.
MIM_IGNORE = shutil.ignore_patterns('__pycache__', '*.py[cod]')


def get_version() -> str:
    """``__version__`` of ``sera_mm/version.py``, executed on its own."""
    path = osp.join(HERE, 'sera_mm', 'version.py')
    namespace: dict = {}
    with open(path, encoding='utf-8') as f:
        exec(compile(f.read(), path, 'exec'), namespace)
    return namespace['__version__']


def parse_requirements(fname: str) -> List[str]:
    """The requirement specifiers of a pip requirements file.

    Blank lines and comments (whole-line, or after whitespace as pip reads
    them) are dropped and ``-r other.txt`` is followed (relative to the
    file). Any other pip option (``-c``, ``-e``, ``--index-url`` ...) has no
    place in package metadata and is an error naming the file and line.
    """
    path = fname if osp.isabs(fname) else osp.join(HERE, fname)
    requirements = []
    with open(path, encoding='utf-8') as f:
        for lineno, raw in enumerate(f, 1):
            line = re.sub(r'(^|\s)#.*$', '', raw).strip()
            if not line:
                continue
            included = re.match(r'^(-r|--requirement)[\s=]+(\S+)$', line)
            if included:
                requirements += parse_requirements(
                    osp.join(osp.dirname(path), included.group(2)))
            elif line.startswith('-'):
                raise ValueError(f'{fname}:{lineno}: pip option {line!r} cannot '
                                 'be package metadata')
            else:
                requirements.append(line)
    return requirements


def _link_mim_folders() -> None:
    """Editable installs: ``sera_mm/.mim/<name>`` -> ``../../<name>``.

    Relative symlinks, so that the live configs and tools are seen (a copy
    left by an older build is replaced).
    """
    mim = osp.join(HERE, 'sera_mm', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FOLDERS:
        target = osp.join(mim, name)
        source = osp.relpath(osp.join(HERE, name), mim)
        if osp.islink(target):
            if os.readlink(target) == source:
                continue
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)
        elif osp.exists(target):
            os.remove(target)
        os.symlink(source, target)


class BuildPyWithMim(build_py):
    """build_py that also copies configs/ and tools/ into the build folder's
    ``sera_mm/.mim/`` (the source tree is left as it is)."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return  # the editable commands link instead
        for name in MIM_FOLDERS:
            source = osp.join(HERE, name)
            if not osp.isdir(source):
                raise FileNotFoundError(
                    f'{source} is missing: a sera_mm wheel needs the {name}/ '
                    'folder beside setup.py (MANIFEST.in keeps it in the sdist)')
            target = osp.join(self.build_lib, 'sera_mm', '.mim', name)
            if osp.isdir(target):
                shutil.rmtree(target)  # no stale file of an earlier build
            shutil.copytree(source, target, ignore=MIM_IGNORE)


class DevelopWithMim(develop):
    """``setup.py develop``: links the ``.mim`` folders first."""

    def run(self) -> None:
        _link_mim_folders()
        super().run()


class EditableWheelWithMim(editable_wheel):
    """``pip install -e .`` (PEP 660): links the ``.mim`` folders first."""

    def run(self) -> None:
        _link_mim_folders()
        super().run()


def readme() -> str:
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


if __name__ == '__main__':
    setup(
        name='sera_mm',
        version=get_version(),
        description='SERA (Spatio-Semantic Expert Routing Architecture) for '
        'referring image segmentation, on DETRIS, as an OpenMMLab plugin',
        long_description=readme(),
        long_description_content_type='text/markdown',
        author='sera_mm contributors',
        keywords='computer vision, referring image segmentation, '
        'vision-language, mixture of experts, parameter-efficient tuning, '
        'OpenMMLab',
        license='Apache-2.0',
        license_files=['LICENSE'],
        packages=find_packages(include=['sera_mm', 'sera_mm.*']),
        python_requires='>=3.11',
        classifiers=[
            'Development Status :: 3 - Alpha',
            'Intended Audience :: Science/Research',
            'Operating System :: POSIX :: Linux',
            'Programming Language :: Python :: 3',
            'Programming Language :: Python :: 3.11',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
            'Topic :: Scientific/Engineering :: Image Recognition',
        ],
        install_requires=parse_requirements('requirements/mminstall.txt') +
        parse_requirements('requirements/runtime.txt'),
        extras_require={
            'tests': parse_requirements('requirements/tests.txt'),
            'optional': parse_requirements('requirements/optional.txt'),
            'webui': parse_requirements('requirements/webui.txt'),
            'deploy': parse_requirements('requirements/deploy.txt'),
            'all': parse_requirements('requirements/tests.txt') +
            parse_requirements('requirements/optional.txt') +
            parse_requirements('requirements/webui.txt') +
            parse_requirements('requirements/deploy.txt'),
        },
        cmdclass={
            'build_py': BuildPyWithMim,
            'develop': DevelopWithMim,
            'editable_wheel': EditableWheelWithMim,
        },
        zip_safe=False)
