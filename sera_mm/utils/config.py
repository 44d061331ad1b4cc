"""Reading configs: the one loader of the tools and the APIs, the check
that ``--cfg-options`` change what they name, and the walks over a
config's typed dicts and over the leaf datasets of a (wrapped) dataset
config."""
import argparse
import ast
import copy
import os.path as osp
import re
from pathlib import Path
from typing import (Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Set,
                    Tuple, Union)

from mmengine.config import Config

ConfigInput = Union[str, Path, Config]

#: The hooks ``Runner.register_default_hooks`` adds unless told None.
MMENGINE_DEFAULT_HOOKS = frozenset(
    ('runtime_info', 'timer', 'sampler_seed', 'logger', 'param_scheduler', 'checkpoint'))


class IneffectiveOverrideError(ValueError):
    """A ``--cfg-options`` key sets a config variable whose value the config
    already copied into other keys when it was read; the message names the
    option and those keys."""


def load_config(config: ConfigInput, cfg_options: Optional[dict] = None) -> Config:
    """Reads a config file (or copies a Config) and merges ``cfg_options``.

    Args:
        config (str | Path | Config): Config file, or a Config (deep-copied,
            the caller's is left as it is).
        cfg_options (dict, optional): Overrides, as ``--cfg-options`` gives
            them (``{'a.b': value}``), merged with
            :meth:`Config.merge_from_dict`.

    Returns:
        Config: The merged config.

    Raises:
        FileNotFoundError: The config file does not exist.
        TypeError: ``config`` is neither a path nor a Config.
        IneffectiveOverrideError: An option sets a variable of the config
            that was already used when the config was read (e.g.
            ``max_epochs=1`` where ``train_cfg = dict(max_epochs=max_epochs)``),
            so that it would change nothing the run reads; see
            :func:`ineffective_overrides`.
    """
    if isinstance(config, (str, Path)):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config not found: {config}')
        config = Config.fromfile(str(config))
    elif isinstance(config, Config):
        config = copy.deepcopy(config)
    else:
        raise TypeError(f'config must be a path or a Config, got {type(config).__name__}')
    if cfg_options:
        problems = ineffective_overrides(config, cfg_options)
        if problems:
            raise IneffectiveOverrideError(' '.join(problems))
        config.merge_from_dict(cfg_options)
    return config


def load_tool_config(args: argparse.Namespace) -> Config:
    """Loads ``args.config`` for ``tools/train.py`` and ``tools/test.py``.

    Reads the config with :func:`load_config` (``args.cfg_options``), sets
    ``launcher`` from ``args.launcher`` and the work dir (``args.work_dir``,
    else the config's, else ``./work_dirs/<config name>``), as mmseg's tools
    do. A ``default_hooks`` entry set to None that is not one of mmengine's
    defaults (``default_hooks.epoch_seed=None``) is dropped, so that None
    turns off any hook, as it does mmengine's own.

    Args:
        args (argparse.Namespace): The tool's arguments: ``config``,
            ``cfg_options``, ``launcher`` and ``work_dir``.

    Returns:
        Config: The merged config.
    """
    cfg = load_config(args.config, args.cfg_options)
    hooks = cfg.get('default_hooks', None)
    if isinstance(hooks, dict):
        # The Runner takes None only for its own default hooks (it removes
        # them); for the others, such as this project's ``epoch_seed``, None
        # here means the same: no such hook.
        for name in [k for k, v in hooks.items() if v is None and k not in MMENGINE_DEFAULT_HOOKS]:
            hooks.pop(name)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def leaf_datasets(dataset_cfg: Any) -> Iterator[dict]:
    """Yields the leaf dataset dicts of a (possibly wrapped) dataset config.

    ``datasets`` (ConcatDataset and friends) is walked in order, ``dataset``
    (RepeatDataset, ClassBalancedDataset ...) is followed; a dict with
    neither is a leaf. Anything that is not a dict yields nothing.
    """
    if not isinstance(dataset_cfg, dict):
        return
    if 'datasets' in dataset_cfg:
        for sub in dataset_cfg['datasets']:
            yield from leaf_datasets(sub)
    elif 'dataset' in dataset_cfg:
        yield from leaf_datasets(dataset_cfg['dataset'])
    else:
        yield dataset_cfg


def typed_nodes(node: Any, path: str = '') -> Iterator[Tuple[str, Mapping]]:
    """Yields ``(dotted key, dict)`` of every dict with a ``type`` key in a
    nested config (dicts, lists and tuples), parents first.

    Args:
        node: A config or a part of one.
        path (str): Dotted key of ``node`` (``''`` for a whole config), the
            prefix of the yielded keys, e.g. ``'model.neck.fusion_cfg'``.
    """
    if isinstance(node, Mapping):
        if 'type' in node:
            yield path, node
        for key, value in node.items():
            yield from typed_nodes(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from typed_nodes(value, f'{path}[{i}]')


# -- --cfg-options that change nothing ---------------------------------------
#
# A config file is Python: ``max_epochs = 6`` then
# ``train_cfg = dict(max_epochs=max_epochs)`` copies the value 6 into
# train_cfg when the file is executed. ``--cfg-options max_epochs=1`` is
# merged afterwards, into the key ``max_epochs`` alone: the training still
# runs 6 epochs. The check below reads the config files' source (the file
# and its ``_base_`` files) to find, for each top-level name, the keys whose
# value was computed from it (``name`` or ``{{_base_.name}}``), and refuses
# an option that sets such a variable without setting those keys too.

#: Top-level keys the Runner itself reads (``Runner.from_cfg``): setting one
#: has an effect even when another key copied it, e.g. ``val_dataloader =
#: test_dataloader`` with ``--cfg-options test_dataloader.batch_size=2``.
_RUNNER_KEYS = frozenset((
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader',
    'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper',
    'param_scheduler', 'val_evaluator', 'test_evaluator', 'default_hooks',
    'custom_hooks', 'data_preprocessor', 'load_from', 'resume', 'launcher',
    'env_cfg', 'log_processor', 'log_level', 'visualizer', 'default_scope',
    'randomness', 'experiment_name', 'model_wrapper_cfg', 'cfg', 'strategy',
    'compile'))


class _Use(NamedTuple):
    """A key whose value was computed from a name when the config was read."""
    key: str      # dotted, list items as [i]: 'param_scheduler[1].end'
    direct: bool  # the value is the name's value itself (not computed from it)
    where: str    # 'file:line'
    order: int    # when the statement ran: files as mmengine merges them (bases first)


class _ParsedConfig(NamedTuple):
    """What :func:`parse_time_uses` reads from a config and its bases."""
    uses: Dict[str, List[_Use]]
    # (key parts, order) of every value a statement sets (a leaf, or a dict
    # with _delete_=True): what was set there before is replaced
    sets: List[Tuple[List[Union[str, int]], int]]

    def replaced_later(self, parts: List[Union[str, int]], order: int) -> bool:
        """Whether a statement run after ``order`` replaced the key ``parts``
        (or a key above it)."""
        return any(o > order and parts[:len(p)] == p for p, o in self.sets)


def _config_files(filename: str) -> List[Tuple[str, ast.Module]]:
    """``(path, syntax tree)`` of ``filename`` and its ``_base_`` files
    (recursively) in the order mmengine merges them: a file's bases (in
    their order) before the file itself.

    Bases given as ``package::path``, not on disk or not Python are left out.
    """
    files: List[Tuple[str, ast.Module]] = []
    seen: Set[str] = set()

    def visit(path: str) -> None:
        path = osp.abspath(path)
        if path in seen or not osp.isfile(path) or not path.endswith('.py'):
            return
        seen.add(path)
        try:
            tree = ast.parse(Path(path).read_text(encoding='utf-8'), path)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            return
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == '_base_' for t in stmt.targets):
                values = stmt.value.elts if isinstance(stmt.value, (ast.List, ast.Tuple)) \
                    else [stmt.value]
                for v in values:
                    if isinstance(v, ast.Constant) and isinstance(v.value, str) \
                            and '::' not in v.value:
                        visit(osp.join(osp.dirname(path), v.value))
        files.append((path, tree))

    visit(filename)
    return files


def _base_reference(node: ast.AST) -> Optional[str]:
    """``name`` of a ``{{_base_.name}}`` placeholder (parsed as a set of a
    set of an attribute), else None."""
    if isinstance(node, ast.Set) and len(node.elts) == 1 \
            and isinstance(node.elts[0], ast.Set) and len(node.elts[0].elts) == 1:
        attr = node.elts[0].elts[0]
        if isinstance(attr, ast.Attribute) and isinstance(attr.value, ast.Name) \
                and attr.value.id == '_base_':
            return attr.attr
    return None


def _referenced_names(node: ast.AST) -> Iterator[str]:
    """Every name an expression reads, ``{{_base_.name}}`` included."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id != '_base_':
            yield sub.id
        else:
            name = _base_reference(sub)
            if name:
                yield name


def _collect_uses(node: ast.AST, key: str, path: str, order: int,
                  parsed: _ParsedConfig) -> None:
    """Records, for the expression ``node`` assigned to ``key`` in the file
    ``path`` (statement number ``order``), which names its parts were
    computed from and which keys it sets."""
    uses = parsed.uses

    def add(name: str, at: str, direct: bool) -> None:
        uses.setdefault(name, []).append(
            _Use(at, direct, f'{path}:{node.lineno}', order))

    is_dict = isinstance(node, ast.Dict) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id == 'dict')
    deletes = is_dict and any(
        (kw.arg == '_delete_') for kw in getattr(node, 'keywords', ())) or (
        isinstance(node, ast.Dict) and any(
            isinstance(k, ast.Constant) and k.value == '_delete_' for k in node.keys))
    if not is_dict or deletes:
        parsed.sets.append((_split_key(key), order))

    name = _base_reference(node)
    if name:
        add(name, key, True)
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        add(node.id, key, True)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == 'dict':
        for arg in node.args:  # dict(base, k=v): base's keys land in key
            _collect_uses(arg, key, path, order, parsed)
        for kw in node.keywords:
            if kw.arg != '_delete_':
                _collect_uses(kw.value, key if kw.arg is None else f'{key}.{kw.arg}', path,
                              order, parsed)
    elif isinstance(node, ast.Dict):
        for k, v in zip(node.keys, node.values):
            if k is None:  # {**base}
                _collect_uses(v, key, path, order, parsed)
            elif isinstance(k, ast.Constant) and isinstance(k.value, str):
                if k.value != '_delete_':
                    _collect_uses(v, f'{key}.{k.value}', path, order, parsed)
            else:
                for n in _referenced_names(v):
                    add(n, key, False)
    elif isinstance(node, (ast.List, ast.Tuple)) and not any(
            isinstance(e, ast.Starred) for e in node.elts):
        for i, elt in enumerate(node.elts):
            _collect_uses(elt, f'{key}[{i}]', path, order, parsed)
    else:
        for n in set(_referenced_names(node)):
            add(n, key, False)


def parse_time_uses(filename: str) -> _ParsedConfig:
    """For every name of a config file and its bases, the keys whose values
    were computed from it when the files were executed, and the keys each
    statement sets.

    Only top-level assignments are read (``x = ...``, ``x: T = ...``); keys
    are dotted with list items as ``[i]`` (``param_scheduler[1].end``).
    """
    parsed = _ParsedConfig({}, [])
    order = 0
    for path, tree in _config_files(filename):
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign):
                targets, value = stmt.targets, stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                targets, value = [stmt.target], stmt.value
            else:
                continue
            order += 1
            for target in targets:
                if isinstance(target, ast.Name) and target.id != '_base_':
                    _collect_uses(value, target.id, _shown_path(path), order, parsed)
    return parsed


def _shown_path(path: str) -> str:
    """``path`` relative to the current folder when it lies below it."""
    rel = osp.relpath(path)
    return path if rel.startswith('..') else rel


def _split_key(key: str) -> List[Union[str, int]]:
    """``'a[1].b'`` or ``'a.1.b'`` -> ``['a', 1, 'b']``."""
    parts: List[Union[str, int]] = []
    for piece in re.split(r'\.|(?=\[)', key):
        if not piece:
            continue
        match = re.fullmatch(r'\[(\d+)\]', piece)
        parts.append(int(match.group(1)) if match else
                     int(piece) if piece.isdigit() else piece)
    return parts


def _join_key(parts: Sequence[Union[str, int]]) -> str:
    out = ''
    for p in parts:
        out += f'[{p}]' if isinstance(p, int) else (f'.{p}' if out else p)
    return out


_MISSING = object()


def _lookup(cfg: Any, parts: Sequence[Union[str, int]]) -> Any:
    node = cfg
    for p in parts:
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node


def _option_text(value: Any) -> str:
    """A value as ``--cfg-options`` would take it back."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        inner = ','.join(_option_text(v) for v in value)
        return f'[{inner}]' if isinstance(value, list) else f'({inner})'
    return repr(value)


def ineffective_overrides(cfg: Config, cfg_options: Mapping[str, Any]) -> List[str]:
    """Lists the options that set a config variable which other keys copied
    when the config was read, so that merging them would not change those
    keys.

    An option ``key=value`` is reported when its top-level name is a
    variable of the config file or its bases (not a dict the Runner reads
    itself, such as ``model`` or ``test_dataloader``) and some other key was
    computed from it (``train_cfg = dict(max_epochs=max_epochs)``,
    ``scale={{_base_.img_scale}}``, also through helper variables such as
    ``_ann = dict(data_root=data_root)``), unless the same options also set
    that key. A key that a later statement set anew (a child config's
    ``train_cfg = dict(max_epochs=50)``) is not listed.

    Args:
        cfg (Config): The config as read, before the options are merged.
        cfg_options (Mapping): The options (``{'a.b': value}``).

    Returns:
        list[str]: One message per ineffective option, naming it, the keys
        computed from the variable (with file and line) and the options to
        give instead; empty when every option has its effect.
    """
    filename = getattr(cfg, 'filename', None)
    if not filename or not osp.isfile(filename):
        return []
    candidates = [k for k in cfg_options if _split_key(k) and isinstance(_split_key(k)[0], str)
                  and _split_key(k)[0] in cfg]
    variables = {str(_split_key(k)[0]) for k in candidates}
    variables = {v for v in variables
                 if not (isinstance(cfg[v], dict) and v in _RUNNER_KEYS)}
    if not variables:
        return []
    parsed = parse_time_uses(filename)
    uses = parsed.uses
    overridden = [_split_key(k) for k in cfg_options]

    def covered(parts: List[Union[str, int]]) -> bool:
        return any(parts[:len(o)] == o for o in overridden)

    def final_uses(name: str, suffix: List[Union[str, int]], direct: bool,
                   seen: Set[str]) -> Iterator[Tuple[List[Union[str, int]], bool, str]]:
        """(key parts, direct, where) of the keys the Runner reads that were
        computed from ``name`` (+ ``suffix``), through helper variables, and
        not set anew by a later statement (a child config)."""
        for use in uses.get(name, ()):
            parts = _split_key(use.key) + list(suffix)
            top = str(parts[0])
            if top == name or top not in cfg:
                continue  # the variable's own definition, or a key no longer there
            if parsed.replaced_later(parts, use.order):
                continue  # a child config set the key anew
            is_direct = direct and use.direct
            helper = top not in _RUNNER_KEYS and top in uses and top not in seen
            # a helper variable (``_ann = dict(data_root=data_root)``) passes
            # the value on to the keys computed from it
            passed_on = list(final_uses(top, parts[1:], is_direct, seen | {top})) \
                if helper else []
            if passed_on:
                yield from passed_on
            elif top in _RUNNER_KEYS or not helper:
                yield parts, is_direct, use.where

    problems = []
    for option in candidates:
        parts = _split_key(option)
        name = str(parts[0])
        if name not in variables:
            continue
        found: Dict[str, Tuple[bool, str]] = {}
        for key_parts, direct, where in final_uses(name, parts[1:], True, {name}):
            if covered(key_parts) or _lookup(cfg, key_parts) is _MISSING:
                continue
            found.setdefault(_join_key(key_parts), (direct, where))
        if not found:
            continue
        value = cfg_options[option]
        listing = ', '.join(
            f'{key} ({where}{"" if direct else ", computed from it"})'
            for key, (direct, where) in found.items())
        instead = ' '.join(f'{_option_key(k)}={_option_text(value)}'
                           for k, (direct, _) in found.items() if direct)
        computed = [k for k, (direct, _) in found.items() if not direct]
        advice = f'set those keys instead: --cfg-options {instead}' if instead else \
            'set those keys instead'
        if instead and computed:
            advice += f' (and {", ".join(computed)} to what they should be)'
        problems.append(
            f'--cfg-options {option}={_option_text(value)} would not change the keys '
            f'that use it: {name!r} is a variable of the config, already copied when the '
            f'config was read into {listing}; {advice}.')
    return problems


def _option_key(key: str) -> str:
    """``'a[1].b'`` -> ``'a.1.b'``, the form ``--cfg-options`` takes."""
    return re.sub(r'\[(\d+)\]', r'.\1', key)
