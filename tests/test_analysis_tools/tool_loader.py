"""Imports a script of tools/analysis_tools (not a package) as a module."""
import importlib.util
import os.path as osp
from types import ModuleType

TOOLS_DIR = osp.join(osp.dirname(__file__), '..', '..', 'tools', 'analysis_tools')


def load_analysis_tool(name: str) -> ModuleType:
    """Returns ``tools/analysis_tools/<name>.py`` as a freshly executed module."""
    spec = importlib.util.spec_from_file_location(f'{name}_tool',
                                                  osp.join(TOOLS_DIR, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
