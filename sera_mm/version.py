"""The version of sera_mm, in one place.

``setup.py`` reads this file without importing the package, and
``sera_mm/__init__.py`` re-exports both names.
"""
from typing import Tuple, Union

__version__ = '0.1.0'


def parse_version_info(version_str: str) -> Tuple[Union[int, str], ...]:
    """Splits a version string into a tuple for comparisons.

    ``'0.1.0'`` gives ``(0, 1, 0)``; a release candidate ``'1.2.0rc1'``
    gives ``(1, 2, 0, 'rc1')``.

    Raises:
        ValueError: A part that is neither a number nor ``<number>rc<n>``.
    """
    info = []
    for part in version_str.split('.'):
        if part.isdigit():
            info.append(int(part))
        elif 'rc' in part and part.split('rc')[0].isdigit():
            number, candidate = part.split('rc', 1)
            info.extend([int(number), f'rc{candidate}'])
        else:
            raise ValueError(f'sera_mm: cannot parse version part {part!r} of '
                             f'{version_str!r}')
    return tuple(info)


version_info = parse_version_info(__version__)

__all__ = ['__version__', 'version_info', 'parse_version_info']
