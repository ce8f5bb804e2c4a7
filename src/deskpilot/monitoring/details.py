"""A signal's ``detail`` as key/value facts and small tables, whatever keys the signal chose to put there.

Signals add detail as they grow (separating tokens, an estimated intent mix, stratified and naive
accuracies, ...); the report should show a new key without being taught about it. So the layout is read
from the shape of each value: scalars are facts, lists of records and mappings of records (per intent, per
tenant) are tables, a mapping of many scalars is a two-column table, anything deeper is flattened under
dotted keys. Long lists and cells are cut.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_ROWS = 25
MAX_ITEMS = 12  # of a list of plain values shown inline
MAX_CELL = 160
INLINE_MAPPING = 4  # a mapping of at most this many scalars reads better as facts than as a table


@dataclass(frozen=True)
class DetailTable:
    title: str
    columns: list[str]
    rows: list[list[str]]
    more: int = 0  # rows left out


@dataclass(frozen=True)
class DetailView:
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[DetailTable] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.facts or self.tables)


def detail_view(detail: Mapping[str, Any]) -> DetailView:
    view = DetailView()
    for key, value in detail.items():
        _add(view, str(key), value)
    return view


def cell(value: Any) -> str:
    """One value as short text: numbers to four significant digits, structures as compact JSON."""
    value = _plain(value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    if isinstance(value, Mapping | list | tuple):
        value = json.dumps(_jsonable(value), ensure_ascii=False, default=str)
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _add(view: DetailView, key: str, value: Any) -> None:
    value = _plain(value)
    if isinstance(value, Mapping):
        _add_mapping(view, key, value)
    elif isinstance(value, list | tuple):
        _add_sequence(view, key, value)
    else:
        view.facts.append((key, cell(value)))


def _add_mapping(view: DetailView, key: str, value: Mapping[Any, Any]) -> None:
    records = [_plain(v) for v in value.values()]
    if not value:
        view.facts.append((key, "-"))
    elif all(isinstance(r, Mapping) and r and all(_scalar(v) for v in r.values()) for r in records):
        columns = list(dict.fromkeys(str(k) for record in records for k in record))
        rows = [[sub, *(_get(r, c) for c in columns)] for sub, r in zip(value, records, strict=True)]
        view.tables.append(_table(key, ["key", *columns], rows))
    elif not all(_scalar(v) for v in value.values()):
        for sub, item in value.items():
            _add(view, f"{key}.{sub}", item)
    elif len(value) <= INLINE_MAPPING:
        view.facts.extend((f"{key}.{sub}", cell(item)) for sub, item in value.items())
    else:
        view.tables.append(_table(key, ["key", "value"], [[sub, item] for sub, item in value.items()]))


def _add_sequence(view: DetailView, key: str, value: Sequence[Any]) -> None:
    items = [_plain(item) for item in value]
    if items and all(isinstance(item, Mapping) for item in items):
        columns = list(dict.fromkeys(str(k) for item in items for k in item))
        rows = [[_get(item, column) for column in columns] for item in items]
        view.tables.append(_table(key, columns, rows))
    elif items and all(isinstance(item, list | tuple) for item in items):
        width = max(len(item) for item in items)
        rows = [[*item, *[None] * (width - len(item))] for item in items]
        view.tables.append(_table(key, [f"#{i + 1}" for i in range(width)], rows))
    elif not items:
        view.facts.append((key, "-"))
    else:
        shown = ", ".join(cell(item) for item in items[:MAX_ITEMS])
        rest = len(items) - MAX_ITEMS
        view.facts.append((key, shown + (f" … ({rest} more)" if rest > 0 else "")))


def _table(title: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> DetailTable:
    shown = [[cell(value) for value in row] for row in rows[:MAX_ROWS]]
    return DetailTable(title, columns, shown, more=max(0, len(rows) - MAX_ROWS))


def _get(item: Mapping[Any, Any], column: str) -> Any:
    return next((value for key, value in item.items() if str(key) == column), None)


def _scalar(value: Any) -> bool:
    return not isinstance(_plain(value), Mapping | list | tuple)


def _plain(value: Any) -> Any:
    """numpy values as Python ones, so that an array is a list and a ``float64`` a float."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _jsonable(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
