"""The monitor's columnar read of the decision log: a window's columns as arrays, no record per row.

A million :class:`~deskpilot.store.records.DecisionRecord` objects cost the monitor most of its run (the
records' validation, the JSON decode of every ``alternatives``); the monitor needs a dozen columns, and
numpy can filter, group and sort them as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np

MONITOR_PAGE = 50_000
"""Rows per keyset page of the columnar read: each page is its own short read transaction."""

COLUMN_ORDER = (
    "tenant",
    "model_name",
    "model_version",
    "fallback",
    "intent",
    "confidence",
    "runner_up",
    "route",
    "review_sample",
    "created_at",
    "text",
    "correct_intent",
)
"""The order of the columns given to :class:`ColumnsBuilder`."""


@dataclass(frozen=True)
class DecisionColumns:
    """Decisions with their verdicts as aligned columns, in storage order (ascending id).

    String columns are object arrays (``correct_intent`` holds ``None`` without a verdict); ``runner_up`` is
    the confidence of the first alternative, 0.0 when none was logged; ``created_at`` is naive UTC
    (``datetime64[us]``), because numpy keeps no zone.
    """

    tenant: np.ndarray
    model_name: np.ndarray
    model_version: np.ndarray
    fallback: np.ndarray
    intent: np.ndarray
    confidence: np.ndarray
    runner_up: np.ndarray
    route: np.ndarray
    review_sample: np.ndarray
    created_at: np.ndarray
    text: np.ndarray
    correct_intent: np.ndarray

    def __len__(self) -> int:
        return len(self.tenant)


class ColumnsBuilder:
    """Collects a read page by page, as columns in :data:`COLUMN_ORDER`, converting each page to arrays as
    it comes.

    Not one growing Python list per column: every full collection of the cyclic garbage collector walks
    each item of a live list, so a million-row read spent more time in the collector than in SQLite. A
    numpy array is one object to the collector, whatever it holds.
    """

    def __init__(self) -> None:
        self._pages: list[DecisionColumns] = []

    def extend(self, columns: Sequence[Sequence[Any]]) -> None:
        """Append one page; ``columns`` is empty for an empty page."""
        if columns:
            self._pages.append(_page(columns))

    def build(self) -> DecisionColumns:
        if not self._pages:
            return _page([() for _ in COLUMN_ORDER])
        if len(self._pages) == 1:
            return self._pages[0]
        return DecisionColumns(
            **{name: np.concatenate([getattr(page, name) for page in self._pages]) for name in COLUMN_ORDER}
        )


def _page(columns: Sequence[Sequence[Any]]) -> DecisionColumns:
    v = dict(zip(COLUMN_ORDER, columns, strict=True))
    text_columns = ("tenant", "model_name", "model_version", "intent", "route", "text", "correct_intent")
    return DecisionColumns(
        **{name: _objects(v[name]) for name in text_columns},
        fallback=np.asarray(v["fallback"], dtype=bool),
        confidence=np.asarray(v["confidence"], dtype=np.float64),
        runner_up=np.asarray([0.0 if x is None else x for x in v["runner_up"]], dtype=np.float64),
        review_sample=np.asarray(v["review_sample"], dtype=bool),
        created_at=utc_times(v["created_at"]),
    )


def utc_times(values: Sequence[str | datetime]) -> np.ndarray:
    """Naive UTC ``datetime64[us]`` from SQLite's stored text (naive UTC, ISO with a space) or from aware
    datetimes (PostgreSQL, the in-memory store); text converts in one vectorised step."""
    if values and isinstance(values[0], datetime):
        return np.asarray([_naive_utc(cast(datetime, value)) for value in values], dtype="datetime64[us]")
    return np.asarray(values, dtype="datetime64[us]")


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the store only holds timezone-aware datetimes")
    return moment.astimezone(UTC).replace(tzinfo=None)


def as_utc(moment: np.datetime64) -> datetime:
    """The aware datetime of one ``created_at`` value."""
    naive: datetime = moment.astype("datetime64[us]").item()
    return naive.replace(tzinfo=UTC)


def to_datetime64(moment: datetime) -> np.datetime64:
    """An aware datetime as the naive UTC ``datetime64[us]`` that :class:`DecisionColumns` compares with."""
    return np.datetime64(_naive_utc(moment), "us")


def _objects(values: Sequence[Any]) -> np.ndarray:
    """An object array (strings kept as Python strings: no copy, no fixed width)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
