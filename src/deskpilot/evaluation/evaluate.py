"""Evaluate one model on labelled data: headline metrics with intervals, breakdowns, cost, behavior.

The caller hands over texts already redacted the way the service redacts them, so what is measured here is
what production sees. Rows whose label the model never saw cannot be scored for accuracy; they are counted,
listed, and measured for what matters about them: whether they are kept away from automatic routing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deskpilot.evaluation import breakdown
from deskpilot.evaluation.behavioral import BatchOutcome, BehavioralResult, BehavioralSuite, run_suite
from deskpilot.evaluation.bootstrap import BOOTSTRAP_METRICS, Interval, ModelOutcome, OutcomeCells
from deskpilot.evaluation.selective import coverage_curve
from deskpilot.evaluation.timing import CostProfile, cost_profile, single_message_latency, timed_batches
from deskpilot.models.artifact import TriageModel

CURVE_POINTS = 200
DEFAULT_CPU_HOUR_PRICE = 0.05  # USD per vCPU-hour, a typical on-demand cloud price


@dataclass(frozen=True)
class EvaluationData:
    """Labelled messages to evaluate on, with any extra categorical columns to slice by."""

    texts: list[str]
    labels: list[str]
    source: str
    extras: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError("texts and labels must have the same length")
        for name, values in self.extras.items():
            if len(values) != len(self.texts):
                raise ValueError(f"extra column {name!r} must have one value per text")


@dataclass(frozen=True)
class EvaluationOptions:
    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0
    latency_sample: int = 100
    cpu_hour_price: float = DEFAULT_CPU_HOUR_PRICE
    per_class_min_support: int = 10


@dataclass(frozen=True)
class RowOutcomes:
    """Per-row answers on every evaluated row (known labels or not), kept for paired comparisons."""

    truth: np.ndarray  # object array of label strings
    predicted: np.ndarray  # object array of label strings
    confidence: np.ndarray
    auto: np.ndarray
    known: np.ndarray  # the model was trained on this row's label


@dataclass
class Evaluation:
    model: dict[str, Any]
    data: dict[str, Any]
    headline: dict[str, Interval]
    per_class: list[breakdown.ClassScore]
    labels: list[str]
    confusion: np.ndarray
    top_confusions: list[breakdown.Confusion]
    curve: dict[str, list[float]]
    reliability: list[breakdown.ReliabilityBin]
    slices: list[breakdown.SliceScore]
    worst_slices: list[breakdown.SliceScore]
    unseen_labels: dict[str, Any]
    cost: CostProfile
    examples: list[breakdown.ExampleError]
    behavioral: BehavioralResult | None
    rows: RowOutcomes

    @property
    def per_class_f1_floor(self) -> float:
        """Lowest F1 among classes with enough support; see ``per_class_min_support``."""
        eligible = [c.f1 for c in self.per_class if c.support >= self.data["per_class_min_support"]]
        return min(eligible) if eligible else float("nan")

    def measured(self, metric: str) -> float | None:
        """The value a gate rule reads for ``metric``; ``None`` if this evaluation did not measure it."""
        if metric in self.headline:
            return self.headline[metric].value
        if metric == "per_class_f1":
            return self.per_class_f1_floor
        if metric.startswith("behavioral_"):
            if self.behavioral is None:
                return None
            return self.behavioral.pass_rates.get(metric.removeprefix("behavioral_"))
        if metric in {"latency_p50_ms", "latency_p99_ms", "cost_per_1k"}:
            return float(getattr(self.cost, metric))
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; a metric that could not be computed (NaN) becomes ``None``."""
        payload = {
            "model": self.model,
            "data": self.data,
            "metrics": {name: interval.to_dict() for name, interval in self.headline.items()},
            "per_class_f1_floor": self.per_class_f1_floor,
            "cost": self.cost.to_dict(),
            "unseen_labels": self.unseen_labels,
            "per_class": breakdown.as_dicts(self.per_class),
            "top_confusions": breakdown.as_dicts(self.top_confusions),
            "confusion_matrix": {"labels": self.labels, "counts": self.confusion.tolist()},
            "coverage_precision_curve": self.curve,
            "reliability": breakdown.as_dicts(self.reliability),
            "slices": breakdown.as_dicts(self.slices),
            "worst_slices": breakdown.as_dicts(self.worst_slices),
            "behavioral": self.behavioral.to_dict() if self.behavioral else None,
            "example_errors": breakdown.as_dicts(self.examples),
        }
        return dict(json_safe(payload))


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def evaluate(
    model: TriageModel,
    data: EvaluationData,
    *,
    model_info: dict[str, Any] | None = None,
    suite: BehavioralSuite | None = None,
    options: EvaluationOptions | None = None,
) -> Evaluation:
    opts = options or EvaluationOptions()
    if not data.texts:
        raise ValueError("nothing to evaluate: the data has no rows")
    probs, wall_s, cpu_s = timed_batches(model.predict_proba, data.texts)
    latencies = single_message_latency(model.predict_proba, data.texts, opts.latency_sample)
    cost = cost_profile(latencies, len(data.texts), wall_s, cpu_s, cpu_hour_price=opts.cpu_hour_price)
    behavioral = None
    if suite is not None:
        known = set(model.classes)
        sample = [t for t, label in zip(data.texts, data.labels, strict=True) if label in known]
        behavioral = run_suite(
            suite, _batch_predictor(model), classes=model.classes, sample_texts=sample, seed=opts.seed
        )
    return score_probabilities(
        probs,
        data,
        classes=model.classes,
        threshold=model.manifest.threshold,
        model_info=dict(model_info or {}) | _model_summary(model),
        cost=cost,
        behavioral=behavioral,
        options=opts,
    )


def score_probabilities(
    probs: np.ndarray,
    data: EvaluationData,
    *,
    classes: Sequence[str],
    threshold: float | None,
    model_info: dict[str, Any],
    cost: CostProfile,
    behavioral: BehavioralResult | None = None,
    options: EvaluationOptions | None = None,
) -> Evaluation:
    """Everything after prediction: what the evaluation costs beyond the model's own predict time."""
    opts = options or EvaluationOptions()
    rows = _row_outcomes(classes, threshold, probs, data.labels)
    known = rows.known
    if not known.any():
        raise ValueError("none of the evaluation labels is one the model knows; there is nothing to score")
    labels = list(classes)
    index = {label: i for i, label in enumerate(labels)}
    truth_idx = np.array([index[t] for t in rows.truth[known]], dtype=np.int64)
    pred_idx = probs[known].argmax(axis=1)
    outcome = ModelOutcome(pred_idx, rows.confidence[known], rows.auto[known])
    cells = OutcomeCells(truth_idx, [outcome], len(labels))
    headline = cells.intervals(BOOTSTRAP_METRICS, n_boot=opts.n_boot, seed=opts.seed, level=opts.level)
    matrix = breakdown.confusion_matrix(truth_idx, pred_idx, len(labels))
    correct = pred_idx == truth_idx
    curve = coverage_curve(outcome.confidence, correct)
    known_texts = [t for t, k in zip(data.texts, known, strict=True) if k]
    words = np.fromiter((len(t.split()) for t in known_texts), dtype=np.int64, count=len(known_texts))
    slice_columns = {"length": breakdown.length_bucket(words)}
    slice_columns |= {name: np.asarray(values, dtype=object)[known] for name, values in data.extras.items()}
    slices = breakdown.slice_scores(slice_columns, correct, outcome.auto)
    return Evaluation(
        model=model_info,
        data={
            "source": data.source,
            "rows": len(data.texts),
            "scored_rows": int(known.sum()),
            "labels": len(set(data.labels)),
            "extra_columns": sorted(data.extras),
            "per_class_min_support": opts.per_class_min_support,
            "bootstrap": opts.n_boot,
            "interval_level": opts.level,
        },
        headline=headline,
        per_class=breakdown.class_scores(matrix, labels),
        labels=labels,
        confusion=matrix,
        top_confusions=breakdown.top_confusions(matrix, labels),
        curve=_downsampled_curve(curve.thresholds, curve.coverage, curve.precision),
        reliability=breakdown.reliability(outcome.confidence, correct),
        slices=slices,
        worst_slices=breakdown.worst_slices(slices),
        unseen_labels=_unseen_summary(rows),
        cost=cost,
        examples=breakdown.example_errors(
            known_texts,
            list(rows.truth[known]),
            list(rows.predicted[known]),
            outcome.confidence,
            outcome.auto,
        ),
        behavioral=behavioral,
        rows=rows,
    )


def _row_outcomes(
    classes: Sequence[str], threshold: float | None, probs: np.ndarray, labels: Sequence[str]
) -> RowOutcomes:
    class_array = np.asarray(classes, dtype=object)
    confidence = probs.max(axis=1)
    auto = confidence >= threshold if threshold is not None else np.zeros(confidence.size, dtype=bool)
    known_labels = set(classes)
    return RowOutcomes(
        truth=np.asarray(labels, dtype=object),
        predicted=class_array[probs.argmax(axis=1)],
        confidence=confidence,
        auto=auto,
        known=np.array([label in known_labels for label in labels], dtype=bool),
    )


def _batch_predictor(model: TriageModel) -> Any:
    classes = np.asarray(model.classes, dtype=object)
    threshold = model.manifest.threshold

    def predict(texts: Sequence[str]) -> BatchOutcome:
        probs = model.predict_proba(list(texts))
        confidence = probs.max(axis=1)
        auto = confidence >= threshold if threshold is not None else np.zeros(confidence.size, dtype=bool)
        return BatchOutcome(intents=list(classes[probs.argmax(axis=1)]), confidence=confidence, auto=auto)

    return predict


def _model_summary(model: TriageModel) -> dict[str, Any]:
    manifest = model.manifest
    return {
        "family": manifest.family,
        "classes": len(manifest.classes),
        "threshold": manifest.threshold,
        "target_precision": manifest.routing.get("target_precision"),
        "dataset_digest": manifest.lineage.get("dataset_digest"),
    }


def _unseen_summary(rows: RowOutcomes) -> dict[str, Any]:
    unseen = ~rows.known
    counts = Counter(str(label) for label in rows.truth[unseen])
    return {
        "rows": int(unseen.sum()),
        "labels": dict(counts.most_common()),
        "routed_human_share": float((~rows.auto[unseen]).mean()) if unseen.any() else None,
    }


def _downsampled_curve(
    thresholds: np.ndarray, coverage: np.ndarray, precision: np.ndarray
) -> dict[str, list[float]]:
    if thresholds.size > CURVE_POINTS:
        keep = np.unique(np.linspace(0, thresholds.size - 1, CURVE_POINTS).round().astype(int))
        thresholds, coverage, precision = thresholds[keep], coverage[keep], precision[keep]
    return {
        "threshold": thresholds.tolist(),
        "coverage": coverage.tolist(),
        "precision": precision.tolist(),
    }
