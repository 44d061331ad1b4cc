"""Loads REFER's ``refs(<by>).p`` without running code from the file.

REFER split files are pickles of plain containers (lists of dicts of str,
int, float and lists), which pickle builds without looking up a global.
``pickle.load`` would import and call any global a file names
(``os.system`` via ``__reduce__``); an unpickler whose ``find_class``
refuses every global still loads every genuine REFER file (Python 2
protocol-2 pickles included) and refuses everything else before any call.
"""
import io
import pickle
from typing import Any


class _PlainUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global and persistent id."""

    def __init__(self, file: io.BufferedIOBase, path: str,
                 encoding: str = 'utf-8') -> None:
        # Python 2 byte strings (SHORT_BINSTRING) are decoded with
        # ``encoding``; 'bytes' keeps them as bytes.
        super().__init__(file, encoding=encoding)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        """Called for every global the pickle references: always refuses."""
        raise pickle.UnpicklingError(
            f'{self._path} references the global {module}.{name}; REFER split '
            'files hold only plain lists, dicts, strings and numbers, so this '
            'file is refused (it may be corrupt or crafted to run code)')

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(
            f'{self._path} uses a persistent id; refused (not a REFER file)')


def _decode_py2_strings(obj: Any) -> Any:
    """Returns ``obj`` with every bytes object decoded as UTF-8, or as
    latin-1 where it is not UTF-8 (Python 2 str loaded with
    ``encoding='bytes'``)."""
    if type(obj) is bytes:
        try:
            return obj.decode('utf-8')
        except UnicodeDecodeError:
            return obj.decode('latin-1')
    if type(obj) is list:
        return [_decode_py2_strings(x) for x in obj]
    if type(obj) is tuple:
        return tuple(_decode_py2_strings(x) for x in obj)
    if type(obj) is dict:
        return {_decode_py2_strings(k): _decode_py2_strings(v)
                for k, v in obj.items()}
    return obj


def _load(f: io.BufferedIOBase, path: str) -> Any:
    """Unpickles ``f``: Python 2 strings as UTF-8; if one is not UTF-8, the
    file again with each string decoded as UTF-8, else latin-1."""
    try:
        return _PlainUnpickler(f, path).load()
    except UnicodeDecodeError:
        f.seek(0)
    # Decoding the whole file as latin-1 would turn every UTF-8 string into
    # mojibake silently; only the strings that are not UTF-8 get latin-1.
    return _decode_py2_strings(_PlainUnpickler(f, path, 'bytes').load())


def load_refer_pickle(path: str) -> Any:
    """Loads a REFER ``refs(<by>).p`` file with the restricted unpickler.

    Python 2 byte strings are decoded as UTF-8, and as latin-1 only where
    they are not UTF-8.

    Returns:
        The unpickled object (a list of ref dicts for a REFER file).

    Raises:
        pickle.UnpicklingError: the file references a global (a crafted or
            foreign pickle) or is corrupt; the message names ``path``.
    """
    with open(path, 'rb') as f:
        try:
            obj = _load(f, path)
        except RecursionError:
            raise pickle.UnpicklingError(
                f'{path} is nested too deeply to load (not a REFER file: a '
                'ref is a dict of lists and scalars)') from None
        except Exception as e:
            if str(e).startswith(path):  # refused by find_class above
                raise
            # truncated, corrupt or not a pickle at all
            raise pickle.UnpicklingError(
                f'{path} is not a readable REFER pickle: '
                f'{type(e).__name__}: {e}') from e
    return obj
