"""sera_mm: SERA for referring image segmentation, as an OpenMMLab plugin."""
__version__ = '0.1.0'


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

    # Runner checkpoints load with torch's weights_only=True plus an allow-list
    register_checkpoint_safe_globals()

    if init_default_scope:
        from mmengine.registry import DefaultScope
        if DefaultScope.get_current_instance() is None or \
                not DefaultScope.check_instance_created('sera_mm'):
            DefaultScope.get_instance('sera_mm', scope_name='sera_mm')


__all__ = ['__version__', 'register_all_modules']
