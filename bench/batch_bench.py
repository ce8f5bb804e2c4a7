"""Batch scoring at scale: the local engine vs the Ray engine on this machine, measured in one run.

A tfidf model is fit on the bundled data; the input is a folder of Parquet parts (100,000 rows each) made
by repeating the bundled texts with unique ids. Each engine runs in its own process (`deskpilot predict`
through the workflow, as a user runs it), and a sampler sums the resident memory of that process and all
its descendants (Ray's raylet, GCS and workers included) every 0.2 s: the peak of that sum is the job's
peak RSS. Rows/s is rows over the job's wall time, Ray's start-up included.

    .venv/bin/python bench/batch_bench.py [--rows 1000000 4000000] [--engines local ray]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "banking77" / "train.csv"
PART_ROWS = 100_000

RUNNER = """
import json, pickle, sys, time
from pathlib import Path
from deskpilot.batch.predict import score_file
from deskpilot.batch.predictor import FramePredictor
from deskpilot.batch.ray_engine import RayOptions, score_with_ray

model = pickle.loads(Path(sys.argv[1]).read_bytes())
engine, source, output = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
predictor = FramePredictor(model)
started = time.perf_counter()
if engine == "ray":
    summary = score_with_ray(predictor, source, output, batch_rows=4096, options=RayOptions(progress=False))
else:
    summary = score_file(predictor, source, output, batch_rows=4096)
print(json.dumps({"rows": summary.rows, "auto": summary.auto_rows, "seconds": time.perf_counter() - started}))
"""


def fit_model(folder: Path) -> Path:
    from deskpilot.domain import RoutingThreshold
    from deskpilot.models.artifact import TriageModel
    from deskpilot.models.tfidf import TfidfClassifier

    frame = pd.read_csv(DATA)
    classifier = TfidfClassifier().fit(frame["text"].tolist(), frame["category"].tolist())
    model = TriageModel.build(classifier, RoutingThreshold(0.5, 0.97, 0.5, 0.98, len(frame)))
    path = folder / "model.pkl"
    import pickle

    path.write_bytes(pickle.dumps(model))
    return path


def make_input(folder: Path, rows: int) -> Path:
    texts = pd.read_csv(DATA)["text"].tolist()
    folder.mkdir(parents=True, exist_ok=True)
    for n, start in enumerate(range(0, rows, PART_ROWS)):
        count = min(PART_ROWS, rows - start)
        ids = range(start, start + count)
        frame = pd.DataFrame({"id": [f"t{i}" for i in ids], "text": [texts[i % len(texts)] for i in ids]})
        frame.to_parquet(folder / f"part-{n:04d}.parquet", index=False)
    return folder


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


def run(model: Path, engine: str, source: Path, output: Path) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(model), engine, str(source), str(output)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    watched = psutil.Process(child.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, tree_rss(watched))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"{engine} failed with exit code {child.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(
        engine=engine, peak_rss_mb=round(peak / 2**20), rows_per_s=round(result["rows"] / result["seconds"])
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = fit_model(root)
        for rows in args.rows:
            source = make_input(root / f"in-{rows}", rows)
            for engine in args.engines:
                output = root / f"out-{engine}-{rows}" / ("" if engine == "ray" else "scores.parquet")
                result = {"input_rows": rows, **run(model, engine, source, output)}
                results.append(result)
                print(json.dumps(result), flush=True)
                shutil.rmtree(output.parent if output.suffix else output, ignore_errors=True)
            for child in source.iterdir():
                child.unlink()
    print()
    print("| rows | engine | rows/s | peak RSS (MB) | wall s |")
    print("|---:|---|---:|---:|---:|")
    for r in results:
        cells = [f"{r['input_rows']:,}", r["engine"], f"{r['rows_per_s']:,}", f"{r['peak_rss_mb']:,}"]
        print("| " + " | ".join([*cells, f"{r['seconds']:.1f}"]) + " |")
    for rows in args.rows:
        pair = {r["engine"]: r for r in results if r["input_rows"] == rows}
        if {"local", "ray"} <= set(pair):
            ratio = pair["ray"]["rows_per_s"] / pair["local"]["rows_per_s"]
            print(f"{rows:,} rows: Ray / local rows/s = {ratio:.2f}")


if __name__ == "__main__":
    main()
