"""What one ``deskpilot monitor`` run costs over a million stored decisions (issue 13).

The reference model is the tfidf family trained on the bundled Banking77 data (seed-0 split, ~10,000
messages); its reference profile is the one training wrote. The decisions are made fast: the model scores
the 10,003 bundled texts once, then 1,000,000 ``DecisionRecord`` rows draw from those scored texts at random,
over 3 tenants, with timestamps spread evenly over one day, and go into a SQLite store through
``SqlStore.write_decisions`` (the service's own write path). Auto routes join the audit sample as the service
picks them (``in_review_sample``, 5%); every sampled decision and 10% of the human-routed ones get an agent's
verdict (the true label), inserted in bulk into the ``feedback`` table (the rows ``add_feedback`` writes,
without its one-transaction-per-verdict cost). The database is cached under ``bench/.cache/monitor`` keyed
by its parameters, so a rerun only measures.

Then ``run_monitor`` reads the whole day as one window, per tenant (4 windows: every tenant, and each of
the 3), and every signal runs. The read is timed by wrapping ``read_windows`` as ``run_monitor`` calls it;
each signal's time is its ``Signal.seconds``. The tfidf model has no encoder, so the embedding MMD is
skipped there; it is measured on its own afterwards with the ``embed`` family (trained on the same data,
cached too): the same 4 windows, MMD only, each embedding ``EMBEDDED_TEXTS`` (1,000) of its texts.

    PYTHONPATH=src .venv/bin/python bench/monitor_bench.py [--rows 1000000] [--no-mmd] [--fresh]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.pii import PiiRedactor
from deskpilot.data.snapshots import SnapshotStore
from deskpilot.domain import Prediction, Route
from deskpilot.models.artifact import TriageModel
from deskpilot.monitoring.profile import Embedder, ReferenceProfile
from deskpilot.service.triage import in_review_sample
from deskpilot.store import migrate
from deskpilot.store.records import DecisionRecord
from deskpilot.store.sql import SqlStore
from deskpilot.store.tables import feedback
from deskpilot.training.run import TrainingConfig, train_on_snapshot

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "banking77" / "train.csv"
CACHE = ROOT / "bench" / ".cache" / "monitor"
ENCODERS = ROOT / ".cache" / "encoders"
MODEL_NAME = "deskpilot-triage"
MODEL_VERSION = "1"
TENANTS = ("acme", "globex", "initech")
DAY_START = datetime(2026, 11, 1, tzinfo=UTC)
REVIEW_RATE = 0.05  # of auto routes, as the service samples them
HUMAN_VERDICT_SHARE = 0.10  # of human routes that an agent corrects or confirms
WRITE_CHUNK = 50_000
GENERATOR_FORMAT = 1  # bump when the way decisions are generated changes (invalidates the cache)


def snapshot_frame(tmp: Path) -> Any:
    table = read_table(DATA)
    report = validate_table(table, DataContract(label_column="category"))
    return SnapshotStore(tmp / "snapshots").create(table, report, PiiRedactor())


def training_digest() -> str:
    """The data and the code that shape a trained model and its reference profile (the cache key)."""
    digest = hashlib.sha256(DATA.read_bytes())
    for module in ("monitoring/profile.py", "monitoring/textstats.py", "training/run.py"):
        digest.update((ROOT / "src" / "deskpilot" / module).read_bytes())
    return digest.hexdigest()[:12]


def trained_model(family: str, seed: int, fresh: bool) -> tuple[TriageModel, float | None]:
    """The family trained on the bundled data (cached by family, seed, data and code); fit seconds if
    trained now."""
    folder = CACHE / f"model-{family}-seed{seed}-{training_digest()}"
    if folder.exists() and not fresh:
        return TriageModel.load(folder), None
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = snapshot_frame(Path(tmp))
        config = TrainingConfig(family=family, seed=seed, cache_dir=ENCODERS)
        started = time.perf_counter()
        run = train_on_snapshot(snapshot, config, progress=lambda m: print(f"  {m}", flush=True))
        seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    run.model.save(folder)
    return run.model, seconds


@dataclass(frozen=True)
class Scored:
    """The bundled texts with their true labels and the model's predictions, scored once."""

    texts: list[str]
    labels: list[str]
    predictions: list[Prediction]
    seconds: float

    def key(self, rows: int, seed: int) -> str:
        """The database's cache key: its parameters and what the model answered."""
        answers = [(p.intent, round(p.confidence, 9)) for p in self.predictions]
        parts = [GENERATOR_FORMAT, rows, len(TENANTS), seed, REVIEW_RATE, HUMAN_VERDICT_SHARE, answers]
        return hashlib.sha256(json.dumps([parts, self.texts]).encode()).hexdigest()[:12]


def score_bundled(model: TriageModel) -> Scored:
    table = pd.read_csv(DATA)
    texts = table["text"].astype(str).tolist()
    started = time.perf_counter()
    predictions = model.predict(texts)
    return Scored(texts, table["category"].astype(str).tolist(), predictions, time.perf_counter() - started)


def generate(model: TriageModel, scored: Scored, path: Path, rows: int, seed: int) -> dict[str, float]:
    """Write ``rows`` decisions drawn from the scored texts, and the verdicts."""
    texts, labels, predictions = scored.texts, scored.labels, scored.predictions
    routes = [model.route_for(p.confidence) for p in predictions]
    alternatives = [tuple((a.intent, a.confidence) for a in p.alternatives) for p in predictions]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(texts), size=rows)
    human_verdict = rng.random(rows) < HUMAN_VERDICT_SHARE
    step = timedelta(days=1) / rows
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    store = SqlStore(url)
    verdicts: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for first in range(0, rows, WRITE_CHUNK):
            records = []
            for i in range(first, min(first + WRITE_CHUNK, rows)):
                j = int(picks[i])
                prediction, route = predictions[j], routes[j]
                request_id = f"{seed:04x}{i:028x}"
                review = route is Route.AUTO and in_review_sample(request_id, REVIEW_RATE)
                record = DecisionRecord(
                    tenant=TENANTS[i % len(TENANTS)],
                    request_id=request_id,
                    model_name=MODEL_NAME,
                    model_version=MODEL_VERSION,
                    intent=prediction.intent,
                    confidence=prediction.confidence,
                    route=route,
                    alternatives=alternatives[j],
                    latency_ms=1.0,
                    text=texts[j],
                    review_sample=review,
                    created_at=DAY_START + step * i,
                )
                records.append(record)
                if review or (route is Route.HUMAN and human_verdict[i]):
                    verdicts.append(
                        {
                            "tenant": record.tenant,
                            "request_id": request_id,
                            "correct_intent": labels[j],
                            "predicted_intent": prediction.intent,
                            "model_version": MODEL_VERSION,
                            "created_at": record.created_at + timedelta(hours=1),
                        }
                    )
            store.write_decisions(records)
    finally:
        store.close()
    decisions_s = time.perf_counter() - started
    started = time.perf_counter()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(feedback), verdicts)
    engine.dispose()
    return {
        "score_s": scored.seconds,
        "write_s": decisions_s,
        "feedback_s": time.perf_counter() - started,
        "verdicts": len(verdicts),
        "auto_share": float(np.mean([routes[int(j)] is Route.AUTO for j in picks[:100_000]])),
    }


def cached_database(model: TriageModel, rows: int, seed: int, fresh: bool) -> tuple[Path, dict[str, Any]]:
    CACHE.mkdir(parents=True, exist_ok=True)
    scored = score_bundled(model)
    path = CACHE / f"decisions-{rows}-{scored.key(rows, seed)}.db"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists() and not fresh:
        return path, {**json.loads(meta_path.read_text()), "cached": True}
    building = path.with_suffix(".building")
    for stale in (building, Path(f"{building}-wal"), Path(f"{building}-shm")):
        stale.unlink(missing_ok=True)
    print(f"generating {rows:,} decisions into {path} ...", flush=True)
    meta = generate(model, scored, building, rows, seed)
    building.rename(path)
    meta_path.write_text(json.dumps(meta))
    return path, {**meta, "cached": False}


@dataclass
class Stopwatch:
    """Times every call of a module-level function for as long as it is installed (see :func:`clocked`)."""

    seconds: list[float] = field(default_factory=list)
    last: Any = None


@contextmanager
def clocked(module: ModuleType, name: str) -> Iterator[Stopwatch]:
    """Replace ``module.name`` by a timed wrapper while the block runs: ``run_monitor`` looks both
    ``read_windows`` and the label-shift estimate up by module attribute at call time."""
    watch = Stopwatch()
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        watch.last = original(*args, **kwargs)
        watch.seconds.append(time.perf_counter() - started)
        return watch.last

    setattr(module, name, wrapper)
    try:
        yield watch
    finally:
        setattr(module, name, original)


def scope(tenant: str | None) -> str:
    return "all tenants" if tenant is None else tenant


def measure_monitor(path: Path, profile: ReferenceProfile) -> dict[str, Any]:
    import deskpilot.monitoring.run as run_module
    from deskpilot.monitoring.run import MonitorConfig, run_monitor
    from deskpilot.monitoring.signals import label_shift
    from deskpilot.monitoring.window import WindowPlan

    store = SqlStore(f"sqlite:///{path}")
    try:
        with (
            clocked(run_module, "read_windows") as read,
            clocked(label_shift, "estimate_label_shift") as shift,
        ):
            started = time.perf_counter()
            result = run_monitor(
                store,
                profile,
                WindowPlan(since=DAY_START, until=DAY_START + timedelta(days=1)),
                model_name=MODEL_NAME,
                model_version=MODEL_VERSION,
                per_tenant=True,
                config=MonitorConfig(),
            )
            total = time.perf_counter() - started
    finally:
        store.close()
    windows = []
    for window in result.windows:
        windows.append(
            {
                "scope": scope(window.tenant),
                "decisions": window.decisions,
                "signals": {
                    str(s.name): {
                        "seconds": s.seconds,
                        "skipped": s.skipped,
                        "fired": s.fired,
                        "statistic": s.statistic,
                    }
                    for s in window.signals
                },
            }
        )
    return {
        "total_s": total,
        "read_s": sum(read.seconds),
        "label_shift_estimate_s": shift.seconds,
        "windows": windows,
        "_windows": read.last,
    }


def measure_mmd(windows: list[Any], seed: int, fresh: bool) -> dict[str, Any]:
    """The embedding MMD alone, with the embed family's profile and encoder, on the same windows."""
    from deskpilot.monitoring.run import MonitorConfig, compute_signals
    from deskpilot.monitoring.types import SignalName

    model, fit_s = trained_model("embed", seed, fresh)
    classifier = model.classifier
    if not isinstance(classifier, Embedder):
        raise SystemExit("the embed family has no embed(); cannot measure the MMD signal")
    profile = ReferenceProfile.from_dict(model.reference or {})
    config = MonitorConfig(only=frozenset({SignalName.EMBEDDING_MMD}), seed=seed)
    classifier.embed(profile.sample_texts[:32])  # load the encoder session before timing
    rows = []
    for window in windows:
        started = time.perf_counter()
        (signal,) = compute_signals(profile, window, config=config, embedder=classifier)
        rows.append(
            {
                "scope": scope(window.tenant),
                "seconds": signal.seconds,
                "wall_s": time.perf_counter() - started,
                "skipped": signal.skipped,
                "statistic": signal.statistic,
                "p_value": signal.p_value,
            }
        )
    return {"fit_s": fit_s, "windows": rows}


def read_floor(path: Path) -> dict[str, float]:
    """Not DeskPilot's path: the columns the monitor needs in one SQL query (sqlite3, no records built),
    as a floor for what reading the day can cost on this machine."""
    import sqlite3

    started = time.perf_counter()
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT d.tenant, d.text, d.intent, d.confidence,"
            " json_extract(d.alternatives, '$[0].confidence'), d.route, d.review_sample, d.created_at,"
            " f.correct_intent FROM decisions d LEFT JOIN feedback f"
            " ON f.tenant = d.tenant AND f.request_id = d.request_id"
            " WHERE d.created_at >= ? AND d.created_at < ? AND d.model_name = ? AND d.model_version = ?"
            " AND NOT d.fallback ORDER BY d.id",
            (
                DAY_START.strftime("%Y-%m-%d %H:%M:%S.%f"),
                (DAY_START + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                MODEL_NAME,
                MODEL_VERSION,
            ),
        ).fetchall()
    finally:
        conn.close()
    tenants, texts, intents, confidence, runner_up, route, review, _times, verdicts = zip(*rows, strict=True)
    margin = np.asarray(confidence, dtype=np.float64) - np.nan_to_num(np.asarray(runner_up, dtype=np.float64))
    auto = np.asarray(route, dtype=object) == Route.AUTO.value
    del tenants, texts, intents, review, verdicts, margin, auto
    return {"seconds": time.perf_counter() - started, "rows": len(rows)}


def machine() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {version('numpy')}, "
        f"scikit-learn {version('scikit-learn')}, scipy {version('scipy')}, "
        f"SQLAlchemy {version('SQLAlchemy')}, "
        f"SQLite {__import__('sqlite3').sqlite_version}; load average {load}"
    )


def print_tables(run: dict[str, Any], mmd: dict[str, Any] | None, target_s: float) -> None:
    windows = run["windows"]
    total = run["total_s"]
    blank = " |" * len(windows)

    def row(label: str, cells: list[str] | None, seconds: float) -> None:
        body = " | ".join(cells) + " |" if cells else blank.lstrip(" ")
        print(f"| {label} | {body} {seconds:.2f} | {seconds / total:.1%} |")

    header = " | ".join(f"{w['scope']} ({w['decisions']:,})" for w in windows)
    print(f"\n| step, seconds | {header} | sum | share of run |")
    print("|---|" + "---:|" * (len(windows) + 2))
    row("read (one scan for all windows)", None, run["read_s"])
    signal_sum = 0.0
    for name in windows[0]["signals"]:
        cells, row_sum = [], 0.0
        for w in windows:
            s = w["signals"][name]
            row_sum += s["seconds"]
            cells.append("skipped" if s["skipped"] else f"{s['seconds']:.3f}")
        signal_sum += row_sum
        row(name, cells, row_sum)
    shift = run["label_shift_estimate_s"]
    shift_cells = [f"{v:.3f}" for v in shift] if len(shift) == len(windows) else None
    row("label-shift estimate (BBSE; outside Signal.seconds)", shift_cells, sum(shift))
    other = total - run["read_s"] - signal_sum - sum(shift)
    row("every signal (sum of Signal.seconds)", None, signal_sum)
    row("rest (BH adjustment, result objects)", None, other)
    row("**run_monitor total**", None, total)
    floor = run["read_floor"]
    compute = total - run["read_s"]
    print(
        f"\nrun_monitor {total:.1f} s against the {target_s:.0f} s target (every signal but the MMD): "
        f"{total / target_s:.2f}x the target; read {run['read_s']:.1f} s ({run['read_s'] / total:.0%}), "
        f"computing {compute:.1f} s ({compute / total:.0%})"
    )
    print(
        f"read floor, not DeskPilot's path (sqlite3, only the needed columns, no records built): "
        f"{floor['seconds']:.2f} s for {floor['rows']:,} rows; the store's read took "
        f"{run['read_s'] / floor['seconds']:.1f}x that"
    )
    if mmd is not None:
        scopes = " | ".join(r["scope"] for r in mmd["windows"])
        print(f"\n| embedding MMD (embed family), seconds | {scopes} | sum |")
        print("|---|" + "---:|" * (len(mmd["windows"]) + 1))
        cells = [
            f"skipped: {r['skipped']}" if r["skipped"] else f"{r['seconds']:.2f}" for r in mmd["windows"]
        ]
        mmd_sum = sum(r["seconds"] for r in mmd["windows"])
        print("| embed 1,000 texts + project + MMD test | " + " | ".join(cells) + f" | {mmd_sum:.2f} |")
        print(
            f"\nMMD over the 4 windows {mmd_sum:.1f} s = {mmd_sum / max(signal_sum, 1e-9):.2f}x every other "
            f"signal together; run_monitor with it would be about {total + mmd_sum:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-s", type=float, default=60.0)
    parser.add_argument("--no-mmd", action="store_true", help="skip the embed family's MMD measurement")
    parser.add_argument("--fresh", action="store_true", help="retrain and regenerate instead of the cache")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"machine at start: {machine()}", flush=True)
    model, fit_s = trained_model("tfidf", args.seed, args.fresh)
    if fit_s is not None:
        print(f"trained tfidf in {fit_s:.0f} s", flush=True)
    profile = ReferenceProfile.from_dict(model.reference or {})
    path, meta = cached_database(model, args.rows, args.seed, args.fresh)
    size_mb = path.stat().st_size / 1e6
    built = "cached" if meta["cached"] else f"generated in {meta['write_s'] + meta['feedback_s']:.0f} s"
    print(
        f"store: {path.name}, {size_mb:,.0f} MB, {args.rows:,} decisions, "
        f"{meta['verdicts']:,} verdicts ({built})"
    )
    run = measure_monitor(path, profile)
    windows = run.pop("_windows")
    run["read_floor"] = read_floor(path)
    mmd = None if args.no_mmd else measure_mmd(windows, args.seed, args.fresh)
    print(f"machine at end: {machine()}")
    print_tables(run, mmd, args.target_s)
    if args.json:
        args.json.write_text(
            json.dumps({"rows": args.rows, "store": meta, "monitor": run, "mmd": mmd}, indent=2, default=str)
        )


if __name__ == "__main__":
    main()
