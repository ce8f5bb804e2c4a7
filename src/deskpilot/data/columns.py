"""Fast, vectorized views of a column's value types, for checks that must run over millions of rows.

Homogeneous columns (every cell a string, as in any CSV) take a C-level path: one ``infer_dtype`` call and
Arrow-backed string kernels. Only mixed columns (JSONL, Parquet written by hand) pay for a per-cell look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

ARROW_STRING = pd.StringDtype("pyarrow")


def is_missing(value: object) -> bool:
    """``None``, ``pd.NA`` or a float NaN: how readers represent an absent cell."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class ColumnKinds:
    """Which cells are strings, integers or missing; ``type_names`` is only built for mixed columns."""

    is_str: np.ndarray
    is_int: np.ndarray
    missing: np.ndarray
    type_names: pd.Series | None

    def name_at(self, position: int) -> str:
        if self.type_names is not None:
            return str(self.type_names.iloc[position])
        return "str" if self.is_str[position] else "missing"


def classify(values: pd.Series) -> ColumnKinds:
    n = len(values)
    none = np.zeros(n, dtype=bool)
    if isinstance(values.dtype, pd.StringDtype):
        missing = values.isna().to_numpy(dtype=bool)
        return ColumnKinds(~missing, none, missing, None)
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind == "string":
        return ColumnKinds(~none, none, none, None)
    if kind == "integer":
        return ColumnKinds(none, ~none, none, None)
    names = values.map(lambda v: "missing" if is_missing(v) else type(v).__name__)
    return ColumnKinds(
        is_str=(names == "str").to_numpy(),
        is_int=(names == "int").to_numpy(),
        missing=(names == "missing").to_numpy(),
        type_names=names,
    )


def as_strings(values: pd.Series, is_str: np.ndarray) -> pd.Series:
    """The column as Arrow-backed strings, with ``""`` where a cell is not a string.

    Cells holding surrogate escapes (bytes that were not UTF-8) cannot become Arrow strings; such a column
    stays an object column, which the same string methods accept, only slower.
    """
    if isinstance(values.dtype, pd.StringDtype):
        return values.fillna("")
    strings = values if is_str.all() else values.where(is_str, "")
    try:
        return strings.astype(ARROW_STRING)
    except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError):
        return strings.astype(object)


def trimmed_labels(values: pd.Series, kinds: ColumnKinds) -> pd.Series:
    """Labels as trimmed strings (integers written out), ``""`` where a label is unusable."""
    if kinds.type_names is None and kinds.is_int.all():
        return values.astype(str).astype(ARROW_STRING)
    usable = kinds.is_str | kinds.is_int
    if kinds.is_int.any():
        values = values.where(~kinds.is_int, values.map(str))
    return as_strings(values, usable).str.strip()
