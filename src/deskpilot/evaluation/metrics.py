"""Headline classification metrics computed from labels and a probability matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

from deskpilot.evaluation.selective import DEFAULT_TARGET_PRECISION, pick_threshold


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, *, bins: int = 15) -> float:
    """Weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    if confidence.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    hit_sum = np.bincount(which, weights=correct.astype(float), minlength=bins)
    filled = counts > 0
    gaps = np.abs(conf_sum[filled] - hit_sum[filled]) / counts[filled]
    return float((gaps * counts[filled]).sum() / confidence.size)


def classification_metrics(
    labels: Sequence[str],
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
) -> dict[str, float]:
    """Accuracy, macro-F1, NLL, ECE and auto-route coverage/precision at ``target_precision``."""
    class_array = np.asarray(classes, dtype=object)
    truth = np.asarray(labels, dtype=object)
    top = probs.argmax(axis=1)
    predicted = class_array[top]
    confidence = probs[np.arange(len(top)), top]
    correct = predicted == truth
    index = {c: i for i, c in enumerate(classes)}
    known = np.array([t in index for t in truth])
    true_probs = np.array(
        [probs[i, index[t]] if k else 0.0 for i, (t, k) in enumerate(zip(truth, known, strict=True))]
    )
    routing = pick_threshold(confidence, correct, target_precision)
    return {
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "nll": float(-np.log(np.clip(true_probs[known], 1e-12, None)).mean())
        if known.any()
        else float("nan"),
        "ece": expected_calibration_error(confidence, correct),
        "auto_coverage": routing.coverage,
        "auto_precision": routing.precision if routing.precision is not None else 0.0,
        "n": float(len(truth)),
    }
