"""Text drift by a domain classifier: DeskPilot's monitor signal against Evidently's, same windows, one run.

Data: the bundled Banking77 messages. One intent is held out (the "new intent" of a product launch, picked
by the seed as the incident drill picks it); the rest is shuffled, the first ``--reference`` (2,000) are the
reference, and every window is drawn from the remainder, so no window text is a reference text. Windows of
``--window`` (1,000) messages, drawn without replacement from the remainder:

- ``clean``: nothing changed (the false-alarm rate);
- one per scenario of ``deskpilot.monitoring.incidents`` (template_wrapper, truncate_lowercase, new_intent,
  shifted_mix), applied to a fresh clean draw.

Each side gets the same reference and window texts and is timed on its drift computation only (a warm-up
call first, then the sides alternate window by window):

- DeskPilot: the monitor's domain-classifier signal (``deskpilot.monitoring.signals.domain``), drift when its
  p-value is at most ``--alpha`` (0.01). In a monitor run Benjamini–Hochberg adjusts it together with the
  other signals; here it is one test, so it is not adjusted.
- Evidently 0.7 (new API): ``Report([ValueDrift(column="text")], include_tests=True)`` over two ``Dataset``
  with ``DataDefinition(text_columns=["text"])``, timed from building the datasets to the finished snapshot.
  For a text column Evidently's default method is its domain classifier (TF-IDF + SGD, one 50/50 split,
  ROC AUC): with more than 1,000 reference rows "Absolute text content drift", drift when AUC > 0.55 (its
  default threshold). A second configuration, "perc_text_content_drift" at threshold 0.99, compares the AUC
  with the 99th percentile of 1,000 random classifiers' AUCs: a test at the same 0.01 level as ours
  (``--no-percentile`` leaves it out; it costs ~30x the default). On a window it finds drifted, Evidently
  fits its classifier a second time for the report's typical words and examples; that is part of its run,
  so it is timed (DeskPilot's signal always lists its separating terms too).

    PYTHONPATH=src .venv/bin/python bench/drift_bench.py [--windows 10] [--json out.json]

Needs the ``bench`` extra (``pip install -e '.[bench]'``, which pins evidently).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry; the benchmark runs offline

import numpy as np
import pandas as pd

from deskpilot.monitoring.incidents import Traffic, scenarios, split_pool
from deskpilot.monitoring.profile import ReferenceProfile
from deskpilot.monitoring.types import Window

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "banking77" / "train.csv"
CLEAN = "clean"
Detector = Callable[[list[str], list[str]], "Outcome"]


@dataclass(frozen=True)
class Outcome:
    drift: bool
    score: float  # AUC for every side
    p_value: float | None
    seconds: float
    cpu_seconds: float = 0.0  # CPU time of the process (all threads): what the machine paid


# -- DeskPilot -----------------------------------------------------------------------------------------


def reference_profile(texts: list[str]) -> ReferenceProfile:
    """A profile whose sample is ``texts``; the domain classifier reads nothing else of it."""
    return ReferenceProfile(
        classes=[],
        routing_threshold=None,
        n_validation=0,
        n_texts=len(texts),
        intent_counts={},
        label_counts={},
        confidence=[],
        margin=[],
        auto_rate=0.0,
        validation_accuracy=float("nan"),
        auto_accuracy=None,
        confusion=[],
        text_lengths=[len(t) for t in texts],
        languages={},
        vocabulary={},
        sample_texts=texts,
    )


def as_window(texts: list[str]) -> Window:
    n = len(texts)
    now = datetime.now(UTC)
    return Window(
        tenant=None,
        start=now,
        end=now,
        texts=texts,
        intents=[""] * n,
        confidence=np.ones(n),
        margin=np.ones(n),
        auto=np.zeros(n, dtype=bool),
        review_sample=np.zeros(n, dtype=bool),
        correct_intent=[None] * n,
    )


def deskpilot_detector(alpha: float, seed: int) -> Detector:
    from deskpilot.monitoring.signals.domain import domain_classifier_signal

    profiles: dict[int, ReferenceProfile] = {}

    def detect(reference: list[str], current: list[str]) -> Outcome:
        # one profile per reference, as a monitor run loads it once for all its windows and tenants: the
        # reference side is encoded on the first window (the warm-up) and reused
        profile = profiles.setdefault(id(reference), reference_profile(reference))
        window = as_window(current)
        started, cpu = time.perf_counter(), time.process_time()
        signal = domain_classifier_signal(profile, window, seed=seed)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        p = signal.p_value
        return Outcome(p is not None and p <= alpha, float(signal.statistic), p, seconds, cpu)

    return detect


# -- Evidently -----------------------------------------------------------------------------------------


def evidently_detector(method: str | None, threshold: float | None) -> Detector:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(text_columns=["text"])

    def detect(reference: list[str], current: list[str]) -> Outcome:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SGDClassifier's ConvergenceWarning on every call
            started, cpu = time.perf_counter(), time.process_time()
            ref = Dataset.from_pandas(pd.DataFrame({"text": reference}), data_definition=definition)
            cur = Dataset.from_pandas(pd.DataFrame({"text": current}), data_definition=definition)
            report = Report(
                [ValueDrift(column="text", method=method, threshold=threshold)], include_tests=True
            )
            snapshot = report.run(current_data=cur, reference_data=ref)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        payload = snapshot.dict()
        (test,) = payload["tests"]
        (metric,) = payload["metrics"]
        status = test["status"]  # a TestStatus enum in the snapshot's dict
        failed = str(getattr(status, "value", status)).upper() == "FAIL"
        return Outcome(failed, float(metric["value"]), None, seconds, cpu)

    return detect


# -- windows -------------------------------------------------------------------------------------------


def draw(pool: Traffic, size: int, rng: np.random.Generator) -> Traffic:
    picked = rng.choice(len(pool), size=size, replace=False)
    return Traffic([pool.texts[i] for i in picked], [pool.intents[i] for i in picked])


def build_windows(
    reference_size: int, window: int, count: int, seed: int
) -> tuple[list[str], list[tuple[str, list[str]]], str]:
    frame = pd.read_csv(DATA)
    texts, labels = frame["text"].astype(str).tolist(), frame["category"].astype(str).tolist()
    names = sorted(set(labels))
    held_out = names[int(np.random.default_rng(seed).integers(0, len(names)))]
    known, unseen = split_pool(texts, labels, held_out_intent=held_out, seed=seed)
    reference = known.texts[:reference_size]
    pool = Traffic(known.texts[reference_size:], known.intents[reference_size:])
    rng = np.random.default_rng(seed + 1)
    windows = [(CLEAN, draw(pool, window, rng).texts) for _ in range(count)]
    for scenario in scenarios(pool, unseen):
        for _ in range(count):
            windows.append((str(scenario.kind), scenario.apply(draw(pool, window, rng), rng).texts))
    return reference, windows, held_out


# -- the run -------------------------------------------------------------------------------------------


def machine() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, evidently {version('evidently')}, "
        f"scikit-learn {version('scikit-learn')}, numpy {version('numpy')}, scipy {version('scipy')}, "
        f"pandas {version('pandas')}; load average {load}"
    )


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(rows: list[dict[str, Any]], sides: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for kind in dict.fromkeys(row["scenario"] for row in rows):
        mine = [row for row in rows if row["scenario"] == kind]
        summary[kind] = {}
        for side in sides:
            outcomes = [row[side] for row in mine]
            summary[kind][side] = {
                "rate": float(np.mean([o["drift"] for o in outcomes])),
                "hits": int(sum(o["drift"] for o in outcomes)),
                "n": len(outcomes),
                "auc_mean": float(np.mean([o["score"] for o in outcomes])),
                "seconds_mean": float(np.mean([o["seconds"] for o in outcomes])),
            }
    return summary


def print_tables(
    summary: dict[str, Any], rows: list[dict[str, Any]], sides: list[str], labels: dict[str, str]
) -> None:
    ours = sides[0]
    print("\n| windows | " + " | ".join(labels[s] for s in sides) + " |")
    print("|---|" + "---|" * len(sides))
    for kind, by_side in summary.items():
        what = "false alarms" if kind == CLEAN else "detected"
        cells = [f"{v['hits']}/{v['n']} (mean AUC {v['auc_mean']:.3f})" for v in by_side.values()]
        print(f"| {kind} ({what}) | " + " | ".join(cells) + " |")
    seconds = {side: float(np.mean([row[side]["seconds"] for row in rows])) for side in sides}
    medians = {side: float(np.median([row[side]["seconds"] for row in rows])) for side in sides}
    print("| seconds per window, mean over all | " + " | ".join(f"{seconds[s]:.3f}" for s in sides) + " |")
    print("| seconds per window, median | " + " | ".join(f"{medians[s]:.3f}" for s in sides) + " |")
    cpu = {side: float(np.mean([row[side]["cpu_seconds"] for row in rows])) for side in sides}
    print("| CPU seconds per window, mean | " + " | ".join(f"{cpu[s]:.4f}" for s in sides) + " |")
    print(
        "| mean seconds, theirs / ours (above 1: DeskPilot faster) | "
        + " | ".join("1" if s == ours else f"{seconds[s] / seconds[ours]:.2f}x" for s in sides)
        + " |"
    )
    print(
        "| mean CPU seconds, theirs / ours | "
        + " | ".join("1" if s == ours else f"{cpu[s] / cpu[ours]:.2f}x" for s in sides)
        + " |"
    )
    clean = summary.get(CLEAN, {})
    for side in sides:
        if side in clean:
            low, high = wilson(int(clean[side]["hits"]), int(clean[side]["n"]))
            print(
                f"false-alarm rate {labels[side]}: {clean[side]['rate']:.2f} "
                f"(95% Wilson {low:.2f}-{high:.2f})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", type=int, default=2_000)
    parser.add_argument("--window", type=int, default=1_000)
    parser.add_argument("--windows", type=int, default=10, help="per scenario, and clean")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-percentile", action="store_true", help="skip Evidently's percentile test")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"machine at start: {machine()}", flush=True)
    reference, windows, held_out = build_windows(args.reference, args.window, args.windows, args.seed)
    print(
        f"reference {len(reference):,} texts; {len(windows)} windows of {args.window:,}; "
        f"held out {held_out!r}"
    )
    detectors: dict[str, Detector] = {
        "deskpilot": deskpilot_detector(args.alpha, args.seed),
        "evidently": evidently_detector(None, None),
    }
    labels = {
        "deskpilot": f"DeskPilot domain classifier (p ≤ {args.alpha})",
        "evidently": "Evidently default (AUC > 0.55)",
        "evidently_perc": "Evidently percentile (p 0.01)",
    }
    if not args.no_percentile:
        detectors["evidently_perc"] = evidently_detector("perc_text_content_drift", 0.99)
    sides = list(detectors)
    cold = deskpilot_detector(args.alpha, args.seed)(reference, windows[0][1]).seconds
    print(f"DeskPilot's first window of a run, encoding the reference too: {cold:.3f} s")
    for detect in detectors.values():  # warm-up: imports, first-call allocations
        detect(reference, windows[0][1])
    rows = []
    started = time.perf_counter()
    for kind, texts in windows:
        row: dict[str, Any] = {"scenario": kind}
        for side, detect in detectors.items():
            row[side] = detect(reference, texts).__dict__
        rows.append(row)
        print(
            f"  {kind:20s} "
            + "  ".join(
                f"{s}: {'DRIFT' if row[s]['drift'] else '-':5s} auc {row[s]['score']:.3f} "
                f"{row[s]['seconds']:.2f}s"
                for s in sides
            ),
            flush=True,
        )
    print(f"\n{len(windows)} windows in {time.perf_counter() - started:.0f} s; machine at end: {machine()}")
    summary = summarise(rows, sides)
    print_tables(summary, rows, sides, labels)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json)},
                    "summary": summary,
                    "windows": rows,
                    "held_out": held_out,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
