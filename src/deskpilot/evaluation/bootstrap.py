"""Bootstrap intervals for classification metrics, vectorized by resampling outcome cells, not rows.

Every headline metric here depends on a row only through a few small integers: its true class, and per model
the predicted class, whether it was routed ``auto`` and its calibration bin. Rows sharing all of them form a
*cell*. Resampling ``n`` rows with replacement is exactly a multinomial draw over the cells with probabilities
``count / n``, so one replicate costs O(cells) instead of O(rows): 100k rows of 77 classes have a few thousand
cells, and a thousand replicates are a handful of matrix products.

ECE's resampled values are biased upwards (an absolute value of noisy bin gaps), so its interval is
shifted back by the estimated bias. The one approximation: inside a cell, the summed confidence (used only
by ECE) is taken as the cell's mean times its resampled count. Bins are narrow, so the effect on the ECE
interval is negligible; point estimates are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

ECE_BINS = 15
BOOTSTRAP_METRICS = ("accuracy", "macro_f1", "auto_coverage", "auto_precision", "ece")
LOWER_IS_BETTER = frozenset({"ece"})
BIAS_CORRECTED = frozenset({"ece"})
_CHUNK_CELLS = 4_000_000  # replicates × cells per chunk: ~32 MB of float64 weights


@dataclass(frozen=True)
class ModelOutcome:
    """One model's answer for each evaluated row, as class indices into a shared label list."""

    predicted: np.ndarray  # int, index of the top class
    confidence: np.ndarray  # float, calibrated top probability
    auto: np.ndarray  # bool, confidence at or above the model's routing threshold

    @property
    def size(self) -> int:
        return int(self.predicted.size)


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    level: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}


def calibration_bin(confidence: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.asarray(np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1), dtype=np.int64)


class OutcomeCells:
    """Rows grouped by (true class, and for each model: predicted class, auto flag, calibration bin)."""

    def __init__(self, truth: np.ndarray, outcomes: Sequence[ModelOutcome], n_classes: int) -> None:
        if not outcomes:
            raise ValueError("at least one model outcome is needed")
        for outcome in outcomes:
            if outcome.size != truth.size:
                raise ValueError("every outcome must cover the same rows as the labels")
        self.n_rows = int(truth.size)
        self.n_classes = n_classes
        columns = [truth.astype(np.int64)]
        for outcome in outcomes:
            columns += [
                outcome.predicted.astype(np.int64),
                outcome.auto.astype(np.int64),
                calibration_bin(outcome.confidence),
            ]
        keys, inverse, counts = np.unique(
            np.column_stack(columns), axis=0, return_inverse=True, return_counts=True
        )
        inverse = inverse.reshape(-1)
        self.counts = counts.astype(np.float64)
        self._truth = keys[:, 0]
        self._models = []
        for m, outcome in enumerate(outcomes):
            base = 1 + 3 * m
            conf_sum = np.bincount(inverse, weights=outcome.confidence, minlength=keys.shape[0])
            self._models.append(
                _CellColumns(
                    predicted=keys[:, base],
                    auto=keys[:, base + 1].astype(bool),
                    bin=keys[:, base + 2],
                    mean_confidence=conf_sum / counts,
                )
            )

    @property
    def n_models(self) -> int:
        return len(self._models)

    def replicates(self, statistic: Callable[[np.ndarray], np.ndarray], n_boot: int, seed: int) -> np.ndarray:
        """``statistic`` (one row, or one row of values, per weight row) of ``n_boot`` resampled count
        matrices, drawn in chunks that bound memory; the same seed draws the same resamples."""
        rng = np.random.default_rng(seed)
        chunk = max(1, _CHUNK_CELLS // max(1, self.counts.size))
        probabilities = self.counts / self.n_rows
        values = []
        for start in range(0, n_boot, chunk):
            size = min(chunk, n_boot - start)
            weights = rng.multinomial(self.n_rows, probabilities, size=size).astype(np.float64)
            values.append(statistic(weights))
        return np.concatenate(values) if values else np.array([], dtype=np.float64)

    def point_weights(self) -> np.ndarray:
        return self.counts[None, :]

    def metric(self, name: str, weights: np.ndarray, model: int = 0) -> np.ndarray:
        """One value of metric ``name`` per row of ``weights`` (replicates × cells)."""
        cells = self._models[model]
        correct = (cells.predicted == self._truth).astype(np.float64)
        totals = weights.sum(axis=1)
        if name == "accuracy":
            return _f64(weights @ correct / totals)
        if name == "auto_coverage":
            return _f64(weights @ cells.auto.astype(np.float64) / totals)
        if name == "auto_precision":
            routed = weights @ cells.auto.astype(np.float64)
            hits = weights @ (cells.auto * correct)
            with np.errstate(invalid="ignore", divide="ignore"):
                return _f64(np.where(routed > 0, hits / np.where(routed > 0, routed, 1.0), np.nan))
        if name == "macro_f1":
            return self._macro_f1(weights, cells, correct)
        if name == "ece":
            gap = cells.mean_confidence - correct
            per_bin = weights @ _one_hot(cells.bin, ECE_BINS, gap)
            return _f64(np.abs(per_bin).sum(axis=1) / totals)
        raise KeyError(f"no bootstrap metric {name!r}; known: {', '.join(BOOTSTRAP_METRICS)}")

    def _macro_f1(self, weights: np.ndarray, cells: _CellColumns, correct: np.ndarray) -> np.ndarray:
        true_pos = weights @ _one_hot(self._truth, self.n_classes, correct)
        support = weights @ _one_hot(self._truth, self.n_classes)
        predicted = weights @ _one_hot(cells.predicted, self.n_classes)
        denominator = support + predicted
        present = denominator > 0  # sklearn averages over labels seen in either truth or predictions
        f1 = np.divide(2 * true_pos, denominator, out=np.zeros_like(true_pos), where=present)
        return _f64(f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1))

    def intervals(
        self, names: Sequence[str], *, n_boot: int, seed: int, level: float = 0.95, model: int = 0
    ) -> dict[str, Interval]:
        """Point estimates and percentile intervals of several metrics of one model, from one set of
        resamples (drawing them is the expensive part)."""
        point = self.point_weights()
        samples = self.replicates(
            lambda weights: np.column_stack([self.metric(name, weights, model) for name in names]),
            n_boot,
            seed,
        ).reshape(-1, len(names))
        out = {}
        for column, name in enumerate(names):
            value = float(self.metric(name, point, model)[0])
            low, high = _percentiles(samples[:, column], level)
            if name in BIAS_CORRECTED and np.isfinite(low):
                # |gap| per bin makes resampled ECE larger than the sample's on average; shift the interval
                # back by that bias so it brackets the estimate
                bias = float(np.nanmean(samples[:, column])) - value
                low, high = max(0.0, low - bias), max(0.0, high - bias)
            out[name] = Interval(value, low, high, level)
        return out

    def interval(self, name: str, *, n_boot: int, seed: int, level: float = 0.95, model: int = 0) -> Interval:
        return self.intervals([name], n_boot=n_boot, seed=seed, level=level, model=model)[name]

    def paired_differences_many(
        self, names: Sequence[str], *, n_boot: int, seed: int
    ) -> dict[str, tuple[float, np.ndarray]]:
        """Observed and resampled ``model 1 − model 0`` differences of several metrics, signed so that
        positive is better, all computed on the same resamples for both models."""
        if self.n_models < 2:
            raise ValueError("paired differences need two model outcomes")
        signs = np.array([-1.0 if name in LOWER_IS_BETTER else 1.0 for name in names])

        def differences(weights: np.ndarray) -> np.ndarray:
            columns = [self.metric(name, weights, 1) - self.metric(name, weights, 0) for name in names]
            return _f64(np.column_stack(columns) * signs)

        observed = differences(self.point_weights())[0] + 0.0
        samples = self.replicates(differences, n_boot, seed).reshape(-1, len(names)) + 0.0
        # + 0.0 turns -0.0 into 0.0, so reports never show "-0.0000"
        return {name: (float(observed[i]), samples[:, i]) for i, name in enumerate(names)}

    def paired_differences(self, name: str, *, n_boot: int, seed: int) -> tuple[float, np.ndarray]:
        return self.paired_differences_many([name], n_boot=n_boot, seed=seed)[name]


@dataclass(frozen=True)
class _CellColumns:
    predicted: np.ndarray
    auto: np.ndarray
    bin: np.ndarray
    mean_confidence: np.ndarray


def _f64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _one_hot(index: np.ndarray, width: int, values: np.ndarray | None = None) -> sparse.csr_array:
    """Sparse cells × width indicator (or value) matrix: one nonzero per cell keeps the products O(cells)."""
    data = np.ones(index.size) if values is None else values.astype(np.float64)
    return sparse.csr_array((data, (np.arange(index.size), index)), shape=(index.size, width))


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)
