"""What a monitor run found: each window's signals, and the run as JSON (stored, printed, reported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from deskpilot.monitoring.types import Signal, SignalName


@dataclass(frozen=True)
class WindowResult:
    tenant: str | None
    start: datetime
    end: datetime
    decisions: int
    signals: list[Signal]
    model_versions: dict[str, int] = field(default_factory=dict)

    @property
    def fired(self) -> list[Signal]:
        return [signal for signal in self.signals if signal.fired]

    def signal(self, name: SignalName) -> Signal | None:
        return next((s for s in self.signals if s.name is name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "decisions": self.decisions,
            "fired": [str(signal.name) for signal in self.fired],
            "model_versions": self.model_versions,
            "signals": [signal_to_dict(signal) for signal in self.signals],
        }


@dataclass(frozen=True)
class MonitorResult:
    model_name: str
    model_version: str
    since: datetime
    until: datetime
    started_at: datetime
    finished_at: datetime
    alpha: float
    windows: list[WindowResult]
    reference_accuracy: float | None = None

    @property
    def fired(self) -> bool:
        return any(window.fired for window in self.windows)

    @property
    def decisions(self) -> int:
        return sum(window.decisions for window in self.windows if window.tenant is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {"name": self.model_name, "version": self.model_version},
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "alpha": self.alpha,
            "reference_accuracy": self.reference_accuracy,
            "decisions": self.decisions,
            "fired": self.fired,
            "windows": [window.to_dict() for window in self.windows],
        }


def signal_to_dict(signal: Signal) -> dict[str, Any]:
    return {
        "name": str(signal.name),
        "kind": str(signal.kind),
        "statistic": _finite(signal.statistic),
        "p_value": _finite(signal.p_value),
        "q_value": _finite(signal.q_value),
        "fired": signal.fired,
        "n_window": signal.n_window,
        "n_reference": signal.n_reference,
        "interval": None if signal.interval is None else [_finite(v) for v in signal.interval],
        "sampling_error": _finite(signal.sampling_error),
        "skipped": signal.skipped,
        "seconds": round(signal.seconds, 4),
        "detail": _jsonable(signal.detail),
    }


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if np.isfinite(number) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return _finite(value)
    return value
