"""Counts of trainable and total parameters, per module of a model."""
from typing import Dict, Iterable, List, Sequence, Union

from torch import nn

ParamRow = Dict[str, Union[str, int, float]]

OWN_PARAMS = '(own)'


def param_report(model: nn.Module,
                 expand: Sequence[str] = ('backbone', )) -> List[ParamRow]:
    """Tabulates the parameters of ``model`` per top-level module.

    One row per immediate child of ``model``; after the row of a child named
    in ``expand``, one row per immediate child of that child (e.g. the
    backbone's ``layers`` next to its adapters). Parameters registered
    directly on a module, not on one of its children (a ViT's ``cls_token``
    or ``pos_embed``), get a row named ``<module>.(own)``. A parameter shared
    by two modules counts once in each of their rows and once in the total.
    The last row, ``total``, counts every parameter of ``model`` once.

    Args:
        model (nn.Module): The model to count.
        expand (Sequence[str]): Names of top-level children whose own
            children get rows too. Names that ``model`` lacks are skipped.
            Defaults to ``('backbone',)``.

    Returns:
        list[dict]: Rows in module order, each with ``name`` (dotted path),
        ``depth`` (0 for top-level rows and ``total``, 1 for expanded ones),
        ``trainable`` and ``total`` (parameter counts) and
        ``trainable_share`` (trainable / total, 0.0 for an empty module).

    Example:
        >>> model = nn.Sequential()
        >>> model.add_module('backbone', nn.Linear(2, 3))
        >>> model.add_module('head', nn.Linear(3, 1))
        >>> [(r['name'], r['total']) for r in param_report(model)]
        [('backbone', 9), ('backbone.weight', 6), ('backbone.bias', 3), \
('head', 4), ('total', 13)]
    """
    rows: List[ParamRow] = []
    own = list(model.named_parameters(recurse=False))
    if own:
        rows.append(_row(OWN_PARAMS, 0, (p for _, p in own)))
    for name, child in model.named_children():
        rows.append(_row(name, 0, child.parameters()))
        if name in expand:
            rows.extend(_child_rows(child, name))
    rows.append(_row('total', 0, model.parameters()))
    return rows


def _child_rows(module: nn.Module, prefix: str) -> List[ParamRow]:
    """Depth-1 rows for the children and direct parameters of ``module``.

    A leaf module (no children, e.g. an ``nn.Linear``) gets one row per
    parameter instead.
    """
    rows: List[ParamRow] = []
    own = list(module.named_parameters(recurse=False))
    children = list(module.named_children())
    if children and own:
        rows.append(_row(f'{prefix}.{OWN_PARAMS}', 1, (p for _, p in own)))
    elif own:
        rows.extend(_row(f'{prefix}.{n}', 1, [p]) for n, p in own)
    for name, child in children:
        rows.append(_row(f'{prefix}.{name}', 1, child.parameters()))
    return rows


def _row(name: str, depth: int,
         params: Iterable[nn.Parameter]) -> ParamRow:
    """Counts ``params`` (each tensor once) into one row."""
    unique = {id(p): p for p in params}.values()
    total = sum(p.numel() for p in unique)
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    return dict(
        name=name,
        depth=depth,
        trainable=trainable,
        total=total,
        trainable_share=trainable / total if total else 0.0)


def format_param_report(rows: List[ParamRow]) -> str:
    """Renders the rows of :func:`param_report` as a text table.

    Expanded rows are indented; counts get thousands separators and the
    share is in percent.
    """
    from prettytable import PrettyTable  # installed with mmseg
    table = PrettyTable(['module', 'trainable', 'total', 'trainable %'])
    table.align['module'] = 'l'
    for col in ('trainable', 'total', 'trainable %'):
        table.align[col] = 'r'
    for row in rows:
        table.add_row([
            '  ' * int(row['depth']) + str(row['name']),
            f"{row['trainable']:,}", f"{row['total']:,}",
            f"{100 * float(row['trainable_share']):.2f}"
        ])
    return table.get_string()
