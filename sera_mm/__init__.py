"""sera_mm: SERA for referring image segmentation, as an OpenMMLab plugin."""
import os.path as osp

from .mmcv_lite import install as _install_mmcv_lite_hook
from .version import __version__, version_info

# Before anything imports mmseg: on mmcv-lite (mmcv without its compiled ops)
# mmseg's unguarded `from mmcv.ops import ...` needs this hook (mmcv_lite.py).
_install_mmcv_lite_hook()


def register_all_modules(init_default_scope: bool = True) -> None:
    """Imports every module of ``sera_mm`` so that its classes are registered.

    Called by the tools before a config is built. Importing is what fills the
    registries; ``init_default_scope`` makes ``sera_mm`` the default scope.
    """
    import sera_mm.datasets  # noqa: F401
    import sera_mm.engine  # noqa: F401
    import sera_mm.evaluation  # noqa: F401
    import sera_mm.models  # noqa: F401
    import sera_mm.visualization  # noqa: F401
    from sera_mm.utils import register_checkpoint_safe_globals

    # Runner checkpoints load with torch's weights_only=True plus an allow-list,
    # passed explicitly by every mmengine CheckpointLoader scheme
    register_checkpoint_safe_globals()

    if init_default_scope:
        from mmengine.registry import DefaultScope
        if DefaultScope.get_current_instance() is None or \
                not DefaultScope.check_instance_created('sera_mm'):
            DefaultScope.get_instance('sera_mm', scope_name='sera_mm')


def get_config_path(name: str = '') -> str:
    """Absolute path of a config shipped with sera_mm (or of its folder).

    A wheel holds the configs in ``sera_mm/.mim/configs`` (where OpenMMLab's
    ``mim`` looks); an editable install links that folder to the
    repository's ``configs/``, and a bare source checkout is read directly.

    Args:
        name: A path relative to ``configs/``, e.g.
            ``'sera/sera_dinov2-b_refcoco.py'``; empty for the folder.

    Raises:
        FileNotFoundError: Neither place holds ``name``.
    """
    return _shipped('configs', name)


def get_tool_path(name: str = '') -> str:
    """Absolute path of a script of ``tools/`` shipped with sera_mm (or of
    the folder), found as :func:`get_config_path` finds configs."""
    return _shipped('tools', name)


def _shipped(folder: str, name: str) -> str:
    package = osp.dirname(osp.abspath(__file__))
    places = (osp.join(package, '.mim', folder), osp.join(osp.dirname(package), folder))
    for place in places:
        path = osp.join(place, name) if name else place
        if osp.isdir(place) and osp.exists(path):
            return path
    raise FileNotFoundError(f'sera_mm: no {folder}/{name} in ' + ' or '.join(places))


__all__ = ['__version__', 'version_info', 'get_config_path', 'get_tool_path',
           'register_all_modules']
