"""How fast does `deskpilot validate` check a large file? One million rows in each supported format.

The rows are the bundled Banking77 messages repeated with a running number (so texts stay distinct, as in a
real ticket export), with 0.1% of rows broken on purpose (empty texts, over-long texts, conflicting
duplicates, missing labels) so that every check has work to do. Reading and checking are timed separately;
the baseline is a straightforward row-by-row check with the csv module, the way a script would do it.

    .venv/bin/python bench/validate_bench.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "banking77" / "train.csv"


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    source = pd.read_csv(BUNDLED)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(source), size=rows)
    texts = (
        source["text"].to_numpy()[picks].astype(object) + " #" + np.arange(rows).astype(str).astype(object)
    )
    labels = source["category"].to_numpy()[picks].astype(object)
    broken = rng.choice(rows, size=rows // 1000, replace=False)
    kinds = np.array_split(broken, 4)
    texts[kinds[0]] = "   "
    texts[kinds[1]] = "x" * 3000
    texts[kinds[2]] = texts[kinds[2] - 1]
    labels[kinds[2]] = "some_other_intent"
    labels[kinds[3]] = ""
    return pd.DataFrame({"text": texts, "category": labels})


def naive_check(path: Path, max_len: int) -> int:
    """Row-by-row reference: the same rules, written the obvious way."""
    problems = 0
    seen: dict[str, str] = {}
    counts: dict[str, int] = defaultdict(int)
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            text, label = row["text"].strip(), row["category"].strip()
            if not text or len(text) > max_len or not label:
                problems += 1
                continue
            if seen.setdefault(text, label) != label:
                problems += 1
            counts[label] += 1
    return problems + sum(1 for n in counts.values() if n < 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    frame = make_frame(args.rows)
    contract = DataContract(label_column="category")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            "csv": Path(tmp) / "big.csv",
            "jsonl": Path(tmp) / "big.jsonl",
            "parquet": Path(tmp) / "big.parquet",
        }
        frame.to_csv(paths["csv"], index=False)
        frame.to_json(paths["jsonl"], orient="records", lines=True, force_ascii=False)
        frame.to_parquet(paths["parquet"], index=False)
        for fmt, path in paths.items():
            start = time.perf_counter()
            table = read_table(path)
            read_s = time.perf_counter() - start
            report = validate_table(table, contract)
            total_s = time.perf_counter() - start
            results.append(
                {
                    "format": fmt,
                    "size_mb": path.stat().st_size / 1e6,
                    "read_s": read_s,
                    "check_s": total_s - read_s,
                    "total_s": total_s,
                    "rows_per_s": args.rows / total_s,
                    "invalid_rows": report.n_invalid_rows,
                }
            )
        start = time.perf_counter()
        naive_problems = naive_check(paths["csv"], contract.max_text_length)
        naive_s = time.perf_counter() - start

    print(
        f"rows: {args.rows:,}; row-by-row baseline on the CSV: {naive_s:.2f} s, {naive_problems:,} problems"
    )
    print("| format | file MB | read s | check s | total s | rows/s | invalid rows | vs row-by-row |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['format']} | {r['size_mb']:.0f} | {r['read_s']:.2f} | {r['check_s']:.2f} "
            f"| {r['total_s']:.2f} | {r['rows_per_s']:,.0f} | {r['invalid_rows']:,} "
            f"| {naive_s / r['total_s']:.1f}x |"
        )
    print(json.dumps({"baseline_s": naive_s, "results": results}))


if __name__ == "__main__":
    main()
