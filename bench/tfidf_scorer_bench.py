"""The TF-IDF family's direct scorer vs the scikit-learn pipeline it was compiled from, in one run.

Fits the tfidf family on a seeded, stratified split of a dataset (default: the bundled Banking77 file),
then on the validation texts measures both paths: single-text latency (p50/p99, the calls alternate so
both see the same machine), throughput in batches of 64, and agreement (largest logit difference, share of
identical top intents). The service's lone requests and the fallback are single-text calls, batch scoring
and busy servers are batches.

    .venv/bin/python bench/tfidf_scorer_bench.py [--data data/banking77/train.csv] [--texts 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from deskpilot.data.splits import split_frame
from deskpilot.models.tfidf import TfidfClassifier
from deskpilot.models.tfidf_scorer import compile_scorer

ROOT = Path(__file__).resolve().parents[1]
Score = Callable[[Sequence[str]], np.ndarray]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def single_text_ms(paths: dict[str, Score], texts: list[str]) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in paths}
    for text in texts:
        for name, score in paths.items():
            start = time.perf_counter()
            score([text])
            timings[name].append((time.perf_counter() - start) * 1000)
    return timings


def batch_rate(score: Score, texts: list[str], batch: int = 64, rounds: int = 3) -> float:
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, len(texts), batch):
            score(texts[i : i + batch])
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "banking77" / "train.csv")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="category")
    parser.add_argument("--texts", type=int, default=1000, help="validation texts timed one at a time")
    args = parser.parse_args()

    frame = pd.read_csv(args.data).rename(columns={args.text_column: "text", args.label_column: "label"})
    digest = hashlib.sha256(args.data.read_bytes()).hexdigest()
    split = split_frame(frame, digest=digest, seed=0)
    train, validation = frame.iloc[split.train], frame.iloc[split.validation]
    started = time.perf_counter()
    model = TfidfClassifier().fit(train["text"].tolist(), train["label"].tolist())
    print(f"fit on {len(train):,} texts in {time.perf_counter() - started:.1f} s")
    scorer = compile_scorer(model.pipeline_)
    assert scorer is not None, "the fitted pipeline does not have the shape the direct scorer handles"

    texts = validation["text"].tolist()
    paths: dict[str, Score] = {
        "scikit-learn pipeline": lambda batch: np.asarray(model.pipeline_.decision_function(list(batch))),
        "direct scorer": scorer,
    }
    reference, direct = paths["scikit-learn pipeline"](texts), scorer(texts)
    agree = float((reference.argmax(axis=1) == direct.argmax(axis=1)).mean())
    print(
        f"{len(texts):,} validation texts: max |logit difference| {np.abs(reference - direct).max():.1e}, "
        f"same top intent for {agree:.2%}"
    )

    for score in paths.values():
        single_text_ms({"warm": score}, texts[:100])
    timings = single_text_ms(paths, texts[: args.texts])
    rates = {name: batch_rate(score, texts) for name, score in paths.items()}
    print()
    print("| path | one text p50 ms | p99 ms | batches of 64, texts/s |")
    print("|---|---|---|---|")
    for name in paths:
        p50 = statistics.median(timings[name])
        print(f"| {name} | {p50:.3f} | {percentile(timings[name], 0.99):.3f} | {rates[name]:,.0f} |")
    base, ours = timings["scikit-learn pipeline"], timings["direct scorer"]
    print(
        f"| ratio | {statistics.median(base) / statistics.median(ours):.1f}x faster | "
        f"{percentile(base, 0.99) / percentile(ours, 0.99):.1f}x | "
        f"{rates['direct scorer'] / rates['scikit-learn pipeline']:.2f}x |"
    )


if __name__ == "__main__":
    main()
