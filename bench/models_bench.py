"""The model ladder on the bundled data: quality, cost and speed of each family, measured in one run.

For each family: validation accuracy, macro-F1, ECE and auto-route coverage at 0.97 precision (threshold
picked on the same seed-0 validation split), fit time, artifact size, in-process single-message latency
(p50/p99) and batch throughput. Then the ONNX vs torch MiniLM encoder (speed and cosine agreement, fp32 and
int8), and batch scoring of a file (read, PII redaction, predict, write) vs the model's raw batch
throughput. The ensemble is built from the members trained here (weights fit on validation), so no member is
trained twice.

    .venv/bin/python bench/models_bench.py [--families tfidf embed finetune] [--finetune-epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deskpilot.batch.predict import score_file
from deskpilot.batch.predictor import FramePredictor
from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.pii import PiiRedactor
from deskpilot.data.snapshots import LABEL, TEXT, SnapshotStore
from deskpilot.data.splits import split_frame
from deskpilot.evaluation.metrics import classification_metrics
from deskpilot.evaluation.selective import pick_threshold
from deskpilot.models.artifact import TriageModel
from deskpilot.models.ensemble import EnsembleClassifier
from deskpilot.training.run import TrainingConfig, train_on_snapshot

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def latency_ms(model: TriageModel, texts: list[str]) -> tuple[float, float]:
    model.predict(texts[:5])
    timings = []
    for text in texts:
        start = time.perf_counter()
        model.predict([text])
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(0.99 * (len(timings) - 1))]


def batch_throughput(model: TriageModel, texts: list[str], batch: int = 64) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        model.predict(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - start)


def describe(name: str, model: TriageModel, fit_s: float, val: tuple[list[str], list[str]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "artifact")
        size = folder_mb(Path(tmp) / "artifact")
    probs = model.predict_proba(val[0])
    metrics = classification_metrics(val[1], probs, model.classes)
    p50, p99 = latency_ms(model, val[0][:300])
    return {
        "family": name,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "ece": metrics["ece"],
        "auto_coverage": metrics["auto_coverage"],
        "threshold": model.manifest.threshold,
        "fit_s": fit_s,
        "artifact_mb": size,
        "p50_ms": p50,
        "p99_ms": p99,
        "batch_per_s": batch_throughput(model, val[0]),
    }


def encoder_comparison(texts: list[str], cache: Path) -> list[dict[str, Any]]:
    from deskpilot.models.encoder import ENCODER_FILE, ENCODER_INT8_FILE, TOKENIZER_FILE, OnnxSentenceEncoder
    from deskpilot.models.encoder_export import ensure_encoder, reference_embeddings

    folder = ensure_encoder(cache)
    reference_embeddings(texts[:16])
    start = time.perf_counter()
    reference = reference_embeddings(texts)
    rows = [{"encoder": "torch (sentence-transformers)", "per_s": len(texts) / (time.perf_counter() - start)}]
    for label, name in (("onnx fp32", ENCODER_FILE), ("onnx int8", ENCODER_INT8_FILE)):
        encoder = OnnxSentenceEncoder(folder / name, folder / TOKENIZER_FILE)
        encoder.encode(texts[:16])
        start = time.perf_counter()
        embeddings = encoder.encode(texts)
        cosine = (embeddings * reference).sum(axis=1)
        rows.append(
            {
                "encoder": label,
                "per_s": len(texts) / (time.perf_counter() - start),
                "cos_mean": float(cosine.mean()),
                "cos_min": float(cosine.min()),
            }
        )
    return rows


def file_scoring(model: TriageModel, texts: list[str], rows: int) -> dict[str, float]:
    repeated = (texts * (rows // len(texts) + 1))[:rows]
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        pd.DataFrame({"id": range(rows), "text": repeated}).to_csv(source, index=False)
        redactor = PiiRedactor()
        summary = score_file(FramePredictor(model, redactor=redactor), source, target)
    start = time.perf_counter()
    for i in range(0, rows, 2048):
        model.predict(repeated[i : i + 2048])
    raw = rows / (time.perf_counter() - start)
    return {"file_per_s": summary.rows_per_second, "raw_per_s": raw, "ratio": summary.rows_per_second / raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", nargs="+", default=["tfidf", "embed", "finetune"])
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    OUT.mkdir(parents=True, exist_ok=True)
    cache = ROOT / ".cache" / "encoders"
    table = read_table(ROOT / "data" / "banking77" / "train.csv")
    report = validate_table(table, DataContract(label_column="category"))
    snapshot = SnapshotStore(OUT / "snapshots").create(table, report, PiiRedactor())
    frame = snapshot.frame
    split = split_frame(frame, digest=snapshot.digest, seed=args.seed)
    val = (frame[TEXT].iloc[split.validation].tolist(), frame[LABEL].iloc[split.validation].tolist())

    results, members, trained = [], [], {}
    for family in args.families:
        params = {"epochs": args.finetune_epochs} if family == "finetune" else {}
        config = TrainingConfig(family=family, seed=args.seed, params=params, cache_dir=cache)
        run = train_on_snapshot(snapshot, config, progress=lambda m: print(f"  {m}", flush=True))
        members.append(run.model.classifier)
        trained[family] = run.model
        results.append(describe(family, run.model, run.fit_seconds, val))
        print(json.dumps(results[-1]), flush=True)
    if len(members) > 1:
        start = time.perf_counter()
        ensemble = EnsembleClassifier.from_fitted(members, val)
        ensemble.calibrate(*val)
        probs = ensemble.predict_proba(val[0])
        correct = np.asarray(ensemble.classes_, dtype=object)[probs.argmax(axis=1)] == np.asarray(
            val[1], dtype=object
        )
        routing = pick_threshold(probs.max(axis=1), correct)
        combined = TriageModel.build(ensemble, routing)
        fit_s = sum(r["fit_s"] for r in results) + time.perf_counter() - start
        results.append(describe("ensemble(" + "+".join(args.families) + ")", combined, fit_s, val))
        print(json.dumps(results[-1]), flush=True)
        print(
            "ensemble weights:",
            dict(zip(args.families, np.round(ensemble.weights_, 3).tolist(), strict=True)),
        )

    encoders = encoder_comparison(val[0], cache)
    rows_by_family = {"tfidf": 20_000, "embed": 4_000}
    scoring = {f: file_scoring(trained[f], val[0], n) for f, n in rows_by_family.items() if f in trained}

    print(f"\nvalidation split: {len(val[0]):,} messages, seed {args.seed}, snapshot {snapshot.digest[:12]}")
    print(
        "| family | accuracy | macro-F1 | ECE | auto @0.97 | fit s | artifact MB "
        "| p50 ms | p99 ms | batch msg/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['family']} | {r['accuracy']:.2%} | {r['macro_f1']:.2%} | {r['ece']:.3f} "
            f"| {r['auto_coverage']:.1%} | {r['fit_s']:.0f} | {r['artifact_mb']:.1f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['batch_per_s']:,.0f} |"
        )
    print("\n| encoder | texts/s | cosine vs torch (mean / min) |\n|---|---|---|")
    for e in encoders:
        agreement = f"{e['cos_mean']:.4f} / {e['cos_min']:.4f}" if "cos_mean" in e else "reference"
        print(f"| {e['encoder']} | {e['per_s']:,.0f} | {agreement} |")
    print("\n| model | file scoring rows/s | raw batch rows/s | ratio |\n|---|---|---|---|")
    for name, s in scoring.items():
        print(f"| {name} | {s['file_per_s']:,.0f} | {s['raw_per_s']:,.0f} | {s['ratio']:.2f} |")
    (OUT / "models.json").write_text(
        json.dumps({"results": results, "encoders": encoders, "scoring": scoring}, indent=2)
    )


if __name__ == "__main__":
    main()
