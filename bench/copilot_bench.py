"""The copilot over HTTP: ``/v1/similar`` and ``/v1/suggest`` vs the same work in process, 100,000 tickets.

One run, one machine: a tfidf champion trained on the bundled data (for the triage half of ``/v1/suggest``),
the retrieval bench's 100,000 synthetic tickets (``bench/retrieval_bench.py``; one partition, HNSW) plus the
sample knowledge base's articles for tenant ``bench``, published to the catalog the service loads. Then:

* in process: ``RetrievalIndex.search`` of one text (what ``/v1/similar`` does after HTTP, auth and
  redaction) and ``Copilot.suggest`` (extractive, no LLM; triage not included), one query at a time;
* ``deskpilot serve --workers N`` (N = 1 and 2; rate limit off, everything else default: redaction, the
  query encoder's micro-batching, the decision and suggestion store) loaded closed-loop with ``wrk`` at each
  --concurrency: ``POST /v1/similar {"text", "k": 5}`` and ``POST /v1/suggest {"text"}`` (triage, retrieval,
  extractive draft, a stored suggestion). Query texts are Banking77 messages (seed 0), not indexed verbatim.

The issue's targets on 2 cores: ``/v1/similar`` p50 <= 10 ms and p99 <= 30 ms at concurrency 8 with 100,000
tickets; the extractive ``/v1/suggest`` p50 <= 25 ms. The server and wrk share the cores: read the ratios.

    .venv/bin/python bench/copilot_bench.py [--home DIR] [--items 100000] [--duration 10] [--warmup 3]
        [--concurrency 1 8] [--workers 1 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

import retrieval_bench  # bench/ is on sys.path when this runs as a script
import serve_bench
from deskpilot.copilot.grounding import TriageView
from deskpilot.copilot.prompts import load_template
from deskpilot.copilot.suggest import Copilot
from deskpilot.data.pii import PiiRedactor
from deskpilot.retrieval.catalog import IndexCatalog
from deskpilot.retrieval.sources import read_articles

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = ROOT / "data" / "banking77" / "kb"
TENANT = retrieval_bench.TENANT
KEY = "bench-key-0123456789abcdef"


def prepare_index(home: Path, items: int) -> int:
    """The catalog under ``home/kb``: the synthetic tickets, then the sample articles added (one version)."""
    catalog = IndexCatalog(home / "kb")
    current = catalog.current_version()
    if current is not None and catalog.version(current).note == "bench+articles":
        print(f"reusing index version {current} in {catalog.root}", flush=True)
        return current
    started = time.perf_counter()
    print(f"building {items:,} synthetic tickets (about 7 min per 100k on 2 cores) ...", flush=True)
    retrieval_bench.build_similar_index(catalog.root, items=items)
    index = catalog.load().add(read_articles(ARTICLES, tenant=TENANT))
    version = catalog.publish(index, sources_digest=f"bench-{items}", note="bench+articles").version
    print(f"  index version {version} in {time.perf_counter() - started:.0f} s", flush=True)
    return version


def query_texts(n: int) -> list[str]:
    frame = pd.read_csv(serve_bench.DATA)
    return frame["text"].astype(str).sample(n=n, random_state=0).tolist()


def in_process(home: Path, texts: list[str]) -> dict[str, dict[str, float]]:
    index = IndexCatalog(home / "kb").load()
    for text in texts[:20]:
        index.search(TENANT, text, 5)
    similar = []
    for text in texts:
        started = time.perf_counter()
        index.search(TENANT, text, 5)
        similar.append((time.perf_counter() - started) * 1000)
    copilot = Copilot(template=load_template(), redactor=PiiRedactor())
    copilot.warm(index)
    view = TriageView("card_arrival", 0.9, "auto")

    async def suggest_all() -> list[float]:
        done = []
        for text in texts:
            started = time.perf_counter()
            await copilot.suggest(tenant=TENANT, text=text, triage=view, index=index, acceptance={})
            done.append((time.perf_counter() - started) * 1000)
        return done

    suggest = asyncio.run(suggest_all())
    return {"similar": _summary(similar), "suggest": _summary(suggest)}


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))],
        "qps": 1000.0 / statistics.mean(ordered),
    }


def over_http(
    home: Path, texts: list[str], workers: list[int], concurrency: list[int], duration: float, warmup: float
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lua = work / "post.lua"
        lua.write_text(serve_bench.WRK_LUA)
        bodies = {
            "/v1/similar": work / "similar.jsonl",
            "/v1/suggest": work / "suggest.jsonl",
        }
        bodies["/v1/similar"].write_text("".join(json.dumps({"text": t, "k": 5}) + "\n" for t in texts))
        bodies["/v1/suggest"].write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        for n in workers:
            spec = serve_bench.ServerSpec(f"deskpilot {n}w", "deskpilot", n)
            server = serve_bench.start_server(spec, home, "", KEY, work)
            try:
                for path, body_file in bodies.items():
                    server.path = path
                    for users in concurrency:
                        serve_bench.run_wrk(server, body_file, lua, users, warmup)
                        load = serve_bench.run_wrk(server, body_file, lua, users, duration)
                        rows.append(
                            {
                                "route": path,
                                "workers": n,
                                "concurrency": users,
                                "req_s": load.requests / load.seconds,
                                "p50_ms": load.p50_ms,
                                "p99_ms": load.p99_ms,
                                "errors": load.errors,
                                "requests": load.requests,
                            }
                        )
                        print(
                            f"  {path:<12} {n}w c={users:<3} {rows[-1]['req_s']:7.1f} req/s  p50 "
                            f"{load.p50_ms:6.2f} ms  p99 {load.p99_ms:6.2f} ms  errors {load.errors}",
                            flush=True,
                        )
            finally:
                server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="copilot-bench-"))
    versions = serve_bench.prepare(home, ["tfidf"])
    serve_bench.set_champion(home, versions["tfidf"])
    (home / "keys.jsonl").unlink(missing_ok=True)
    import os

    os.environ["DESKPILOT_API_KEYS"] = f"{TENANT}:{KEY}"
    os.environ["DESKPILOT_KB_RELOAD_INTERVAL_S"] = "0"
    version = prepare_index(home, args.items)
    texts = query_texts(args.queries)
    print("in process (one query at a time):", flush=True)
    local = in_process(home, texts)
    for name, found in local.items():
        print(f"  {name:<8} p50 {found['p50_ms']:6.2f} ms  p99 {found['p99_ms']:6.2f} ms", flush=True)
    print("over HTTP (wrk, closed loop):", flush=True)
    rows = over_http(home, texts, args.workers, args.concurrency, args.duration, args.warmup)
    similar_local = local["similar"]["p50_ms"]
    print("\nroute         workers  c   req/s    p50 ms  p99 ms  p50 / in-process", flush=True)
    for row in rows:
        base = similar_local if row["route"] == "/v1/similar" else local["suggest"]["p50_ms"]
        print(
            f"{row['route']:<13} {row['workers']:>7} {row['concurrency']:>3} {row['req_s']:7.1f} "
            f"{row['p50_ms']:8.2f} {row['p99_ms']:7.2f}  {row['p50_ms'] / base:6.2f}x",
            flush=True,
        )
    result = {"items": args.items, "index_version": version, "in_process": local, "http": rows}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
