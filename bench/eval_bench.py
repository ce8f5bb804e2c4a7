"""How long does evaluation take beyond the model's own predictions? 100,000 rows, 77 classes.

Probabilities are synthetic (a model that is right ~90% of the time, with plausible confidences) so the
figure measures only DeskPilot's evaluation: headline metrics with 1,000-resample bootstrap intervals,
per-class scores, confusions, curve, reliability, slices (length and an extra column), then the gate's paired
comparison of two such models (paired bootstrap on five metrics plus McNemar). The baseline is the textbook
row bootstrap (resample row indices, recompute with scikit-learn) for accuracy and macro-F1, timed on a few
resamples and scaled to 1,000.

    .venv/bin/python bench/eval_bench.py [--rows 100000] [--bootstrap 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from deskpilot.evaluation.evaluate import EvaluationData, EvaluationOptions, score_probabilities
from deskpilot.evaluation.gate import decide
from deskpilot.evaluation.policy import load_policy
from deskpilot.evaluation.timing import CostProfile

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "banking77" / "train.csv"
BASELINE_RESAMPLES = 5


def synthetic_probabilities(labels: np.ndarray, classes: int, skill: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = labels.size
    logits = rng.normal(0.0, 1.0, (n, classes))
    right = rng.random(n) < skill
    target = np.where(right, labels, rng.integers(0, classes, n))
    logits[np.arange(n), target] += rng.uniform(2.0, 7.0, n)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()

    source = pd.read_csv(BUNDLED)
    classes = sorted(source["category"].unique())
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(source), args.rows)
    texts = source["text"].to_numpy()[picks].astype(str).tolist()
    label_idx = np.searchsorted(classes, source["category"].to_numpy()[picks])
    labels = [classes[i] for i in label_idx]
    channel = np.where(rng.random(args.rows) < 0.3, "email", "chat").tolist()
    data = EvaluationData(texts=texts, labels=labels, source="synthetic", extras={"channel": channel})
    champion_probs = synthetic_probabilities(label_idx, len(classes), 0.90, seed=1)
    challenger_probs = synthetic_probabilities(label_idx, len(classes), 0.89, seed=2)
    cost = CostProfile(1.0, 2.0, 100, 1000.0, 1.0, 0.0, 0.05)
    options = EvaluationOptions(n_boot=args.bootstrap)

    def score(probs: np.ndarray, name: str) -> tuple[float, object]:
        started = time.perf_counter()
        evaluation = score_probabilities(
            probs, data, classes=classes, threshold=0.9, model_info={"uri": name}, cost=cost, options=options
        )
        return time.perf_counter() - started, evaluation

    score_s, champion = score(champion_probs, "champion")
    _, challenger = score(challenger_probs, "challenger")
    policy = load_policy()
    started = time.perf_counter()
    decision = decide(challenger, champion, policy)  # type: ignore[arg-type]
    gate_s = time.perf_counter() - started

    truth = label_idx
    predicted = champion_probs.argmax(axis=1)
    started = time.perf_counter()
    for _ in range(BASELINE_RESAMPLES):
        rows = rng.integers(0, args.rows, args.rows)
        float(np.mean(truth[rows] == predicted[rows]))
        f1_score(truth[rows], predicted[rows], average="macro")
    naive_s = (time.perf_counter() - started) / BASELINE_RESAMPLES * args.bootstrap

    print(f"rows {args.rows:,}, classes {len(classes)}, bootstrap resamples {args.bootstrap}")
    print(f"evaluate (all metrics, intervals, breakdowns, slices): {score_s:6.2f} s")
    print(f"gate (paired bootstrap x{len(policy.relative)} metrics + McNemar): {gate_s:6.2f} s")
    print(f"row bootstrap, accuracy + macro-F1 only (scikit-learn), scaled: {naive_s:6.1f} s")
    print(f"ratio row bootstrap / DeskPilot evaluate: {naive_s / score_s:6.1f}x")
    print(f"gate outcome on the synthetic pair: {decision.outcome} ({decision.reason()[:120]})")


if __name__ == "__main__":
    main()
