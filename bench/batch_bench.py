"""Batch scoring at scale: the local engine vs the Ray engine on this machine, measured in one run.

A tfidf model is fit on the bundled data; the input is a folder of Parquet parts (100,000 rows each) made
by repeating the bundled texts with unique ids. Each engine runs in its own process (`deskpilot predict`
through the workflow, as a user runs it), and a sampler sums the resident memory of that process and all
its descendants (Ray's raylet, GCS and workers included) every second, as RSS and as PSS (shared pages
split among the processes mapping them, so Ray's shared object store counts once): the peaks of those sums
are the job's peak RSS and PSS, and the PSS peaks of the first and second half of the run show whether
memory levels off (streaming) or keeps growing with the rows read. Rows/s is rows over the job's wall time,
Ray's start-up included.

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


def tree_memory(process: psutil.Process, *, proportional: bool) -> int:
    """Summed RSS, or PSS (shared pages split among the processes that map them: Ray's object store and
    its workers' shared libraries are counted once), of a process and all its descendants."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_full_info().pss if proportional else member.memory_info().rss
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
    samples: list[tuple[float, int, int]] = []  # (seconds since start, RSS, PSS)
    done = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                rss = tree_memory(watched, proportional=False)
                pss = tree_memory(watched, proportional=True)
                samples.append((time.monotonic() - started, rss, pss))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"{engine} failed with exit code {child.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    half = (samples[-1][0] / 2) if samples else 0.0
    mb = 2**20
    result.update(
        engine=engine,
        rows_per_s=round(result["rows"] / result["seconds"]),
        peak_rss_mb=round(max((r for _, r, _ in samples), default=0) / mb),
        peak_pss_mb=round(max((p for _, _, p in samples), default=0) / mb),
        # a streaming engine's memory levels off: the second half of a run peaks no higher than the first
        pss_first_half_peak_mb=round(max((p for t, _, p in samples if t <= half), default=0) / mb),
        pss_second_half_peak_mb=round(max((p for t, _, p in samples if t > half), default=0) / mb),
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
    columns = ["rows", "engine", "rows/s", "peak RSS (MB)", "peak PSS (MB)", "PSS peak, 1st / 2nd half (MB)"]
    header = "| " + " | ".join([*columns, "wall s"]) + " |"
    print(header)
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        cells = [f"{r['input_rows']:,}", r["engine"], f"{r['rows_per_s']:,}", f"{r['peak_rss_mb']:,}"]
        halves = f"{r['pss_first_half_peak_mb']:,} / {r['pss_second_half_peak_mb']:,}"
        print("| " + " | ".join([*cells, f"{r['peak_pss_mb']:,}", halves, f"{r['seconds']:.1f}"]) + " |")
    for rows in args.rows:
        pair = {r["engine"]: r for r in results if r["input_rows"] == rows}
        if {"local", "ray"} <= set(pair):
            ratio = pair["ray"]["rows_per_s"] / pair["local"]["rows_per_s"]
            print(f"{rows:,} rows: Ray / local rows/s = {ratio:.2f}")


if __name__ == "__main__":
    main()
