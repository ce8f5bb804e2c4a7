"""The values the monitor passes around: a window of logged decisions and the signal computed on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np


class SignalKind(StrEnum):
    PREDICTION = "prediction"
    INPUT = "input"
    LABEL_SHIFT = "label_shift"
    QUALITY = "quality"


class SignalName(StrEnum):
    """Stable signal names: Prometheus labels, alert rules and the runbook use them."""

    INTENT_HISTOGRAM = "intent_histogram"
    CONFIDENCE = "confidence"
    MARGIN = "margin"
    AUTO_ROUTE_RATE = "auto_route_rate"
    DOMAIN_CLASSIFIER = "domain_classifier"
    VOCABULARY = "vocabulary"
    TEXT_LENGTH = "text_length"
    LANGUAGE = "language"
    EMBEDDING_MMD = "embedding_mmd"
    LABEL_SHIFT = "label_shift"
    ACCURACY_FEEDBACK = "accuracy_feedback"
    ACCURACY_ESTIMATE = "accuracy_estimate"
    ACCURACY_AUDIT_SAMPLE = "accuracy_audit_sample"


@dataclass(frozen=True)
class Signal:
    """One test on one window.

    ``p_value`` is the test's own; ``q_value`` is the Benjamini–Hochberg adjusted one across every test of
    the run (filled by the run, ``None`` before). ``fired`` is decided on ``q_value`` (or, for signals that
    are intervals rather than tests, on the interval). ``skipped`` says why a signal was not computed (the
    window was below its minimum size, the model has no embedding sample, ...); a skipped signal never fires.
    ``sampling_error`` is the standard error of ``statistic`` at this window size, when it has one.
    """

    name: SignalName
    kind: SignalKind
    statistic: float = float("nan")
    p_value: float | None = None
    q_value: float | None = None
    fired: bool = False
    n_window: int = 0
    n_reference: int = 0
    interval: tuple[float, float] | None = None
    sampling_error: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Window:
    """The logged decisions of one time range (and tenant, or every tenant when ``tenant`` is ``None``).

    Arrays are aligned with ``texts``. ``margin`` is the confidence minus the runner-up's (the confidence
    itself when no runner-up was logged). ``correct_intent`` holds the agent's verdict or ``None``;
    ``review_sample`` marks auto-routed decisions that were sampled for human review.
    """

    tenant: str | None
    start: datetime
    end: datetime
    texts: list[str]
    intents: list[str]
    confidence: np.ndarray
    margin: np.ndarray
    auto: np.ndarray
    review_sample: np.ndarray
    correct_intent: list[str | None]
    model_versions: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)
