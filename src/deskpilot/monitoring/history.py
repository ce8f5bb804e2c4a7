"""The all-tenant windows of past monitor runs (and of the current one) as points in time, for the plots.

Stored runs are read from their JSON, which older or newer versions of the monitor may have written with
fewer or more keys: a missing value becomes NaN or ``None`` rather than an error, so one odd row never
keeps the report from rendering.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deskpilot.monitoring.result import MonitorResult, WindowResult
from deskpilot.store.records import MonitorRunRecord


@dataclass(frozen=True)
class SignalPoint:
    statistic: float  # NaN when the signal had none (skipped, or not finite)
    q_value: float | None
    fired: bool


@dataclass(frozen=True)
class HistoryPoint:
    """One all-tenant window: where it ended, which model version it watched, and its signals by name."""

    end: datetime
    model_version: str
    signals: dict[str, SignalPoint]


def overall_history(result: MonitorResult, history: Sequence[MonitorRunRecord]) -> list[HistoryPoint]:
    """The all-tenant windows of ``history`` for the same model, then the current run's, by window end.

    A stored run with the current run's start time is the current run itself (saved before the report was
    written) and is left out so that it is not plotted twice.
    """
    points = [
        point
        for record in history
        if record.model_name == result.model_name and record.started_at != result.started_at
        for point in _record_points(record)
    ]
    points += [
        _window_point(window, result.model_version) for window in result.windows if window.tenant is None
    ]
    return sorted(points, key=lambda point: point.end)


def stored_history(history: Sequence[MonitorRunRecord], model_name: str | None = None) -> list[HistoryPoint]:
    """The all-tenant windows of stored runs (of ``model_name``, or of every model), by window end."""
    points = [
        point
        for record in history
        if model_name is None or record.model_name == model_name
        for point in _record_points(record)
    ]
    return sorted(points, key=lambda point: point.end)


def _record_points(record: MonitorRunRecord) -> list[HistoryPoint]:
    data = record.result
    if data.get("tenant", record.tenant) is not None:
        return []
    end = _datetime(data.get("end")) or record.until
    raw = data.get("signals")
    signals = [s for s in raw if isinstance(s, Mapping) and s.get("name")] if isinstance(raw, list) else []
    return [HistoryPoint(end, record.model_version, {str(s["name"]): _signal_point(s) for s in signals})]


def _window_point(window: WindowResult, model_version: str) -> HistoryPoint:
    signals = {
        str(s.name): SignalPoint(_float(s.statistic), _optional(s.q_value), s.fired) for s in window.signals
    }
    return HistoryPoint(window.end, model_version, signals)


def _signal_point(data: Mapping[str, Any]) -> SignalPoint:
    return SignalPoint(
        _float(data.get("statistic")), _optional(data.get("q_value")), data.get("fired") is True
    )


def _float(value: Any) -> float:
    optional = _optional(value)
    return math.nan if optional is None else optional


def _optional(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
