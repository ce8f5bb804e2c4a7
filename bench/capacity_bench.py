"""Capacity: what one `deskpilot serve` worker does per CPU core and per GiB, for each model family, and what
a reply draft costs, measured in one run (the numbers behind docs/capacity.md).

For each family a real ``deskpilot serve --workers 1`` (started by ``serve_bench.start_server``: rate limit
off, everything else default, SQLite store under the home) serves that family as champion, and ``wrk`` loads
``POST /v1/triage`` at each --concurrency (--warmup s discarded, --duration s measured). Per level: req/s,
p50, p99, errors, the server tree's CPU seconds over the measured window (psutil, user + system) and from
them **requests per CPU-second** (= req/s one fully used core sustains) and the load generator's CPU share.
After the load: RSS and PSS of the server tree (one worker, warm). The 1-minute load average is printed
next to every row: the machine has 2 cores and the generator shares them, so compare within a run.

Families: tfidf and embed as ``deskpilot train`` makes them. finetune and the ensemble
(tfidf+embed+finetune, as in the model ladder) take ~30 min at their defaults, so they are trained with a
tiny configuration (one epoch on --small-rows rows; the same architecture, max_length and ONNX export, so
serving costs what the full model costs; their accuracy is meaningless and not reported).

Drafts: ``POST /v1/suggest {"text"}`` against a champion tfidf with a knowledge base (the bundled articles
plus the bundled tickets not used as queries, imported with ``deskpilot kb import`` for the bench tenant),
query texts not in the index, in two settings:

* ``extractive``: the shipped offline default (no LLM configured): CPU per draft, no tokens;
* ``llm``: ``DESKPILOT_LLM_BASE_URL`` pointed at a local OpenAI-compatible stand-in (a separate process, not
  counted as server CPU) that answers as a compliant model would (the first two sentences of source [1],
  cited) and reports usage counted with the MiniLM WordPiece tokenizer, as ``copilot_cost_bench.py`` does.
  Tokens per draft come from the server's own counters (``deskpilot_copilot_llm_tokens_total``), so they are
  what the gateway would bill; cache hits are reported.

    .venv/bin/python bench/capacity_bench.py [--families tfidf embed finetune ensemble]
        [--concurrency 1 8 32 64] [--duration 10] [--warmup 3] [--suggest-concurrency 8] [--home DIR]
        [--json OUT]

``--home DIR`` keeps the trained models and the knowledge base so a later run skips preparing them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_bench import (
    BIN,
    DATA,
    HOST,
    NAME,
    Load,
    Server,
    ServerSpec,
    check_answer,
    deskpilot,
    environment,
    free_port,
    http_get,
    http_post,
    registry,
    run_wrk,
    set_champion,
    start_server,
    write_wrk_files,
)

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = ROOT / "data" / "banking77" / "kb"
TENANT = "bench"

# finetune and the ensemble: the serving architecture of the defaults, one short epoch of training
TINY: dict[str, list[str]] = {
    "tfidf": [],
    "embed": [],
    "finetune": ["epochs=1", "patience=1"],
    "ensemble": [
        'members=["tfidf", "embed", "finetune"]',
        'member_params={"finetune": {"epochs": 1, "patience": 1}}',
    ],
}

STUB = r"""
import json, sys
import uvicorn
from tokenizers import Tokenizer
from deskpilot.retrieval.passages import split_sentences

tokenizer = Tokenizer.from_file(sys.argv[2])

def count(text):
    return len(tokenizer.encode(text).ids)

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = json.loads(body or b"{}")
    messages = request.get("messages", [])
    user = messages[-1]["content"] if messages else ""
    first = next((ln for ln in user.splitlines() if ln.startswith("[1] ")), "[1] nothing.")
    source = first[4:].split(": ", 1)[-1]
    answer = " ".join(f"{s.rstrip('.')} [1]." for s in split_sentences(source)[:2])
    prompt = sum(count(m["content"]) + 4 for m in messages) + 3
    out = {
        "id": "stub", "object": "chat.completion", "model": request.get("model", "stand-in"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": answer}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": count(answer),
                  "total_tokens": prompt + count(answer)},
    }
    raw = json.dumps(out).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": raw})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------------------------------------ setup


def prepare(home: Path, families: list[str], small_rows: int) -> dict[str, str]:
    """The newest registered version of each family, trained with the real CLI when missing."""
    home.mkdir(parents=True, exist_ok=True)
    found: dict[str, str] = {}
    if (home / "mlflow.db").exists():
        for v in registry(home).versions(NAME):  # newest first
            found.setdefault(v.family, v.version)
    small = home / "small.csv"
    if not small.exists():  # the same rows for every tiny family: the first rows of each intent
        frame = pd.read_csv(DATA)
        per = max(1, small_rows // frame["category"].nunique())
        frame.groupby("category", sort=False).head(per).to_csv(small, index=False)
    for family in ["tfidf", *[f for f in families if f != "tfidf"]]:  # tfidf first: the fallback
        if family in found:
            print(f"reusing models:/{NAME}/{found[family]} ({family})", flush=True)
            continue
        data = small if TINY[family] else DATA
        params = [arg for p in TINY[family] for arg in ("--param", p)]
        print(f"training {family} on {data.name} {' '.join(TINY[family])} ...", flush=True)
        start = time.perf_counter()
        out = json.loads(
            deskpilot(
                home,
                "train",
                "--data",
                str(data),
                "--label-column",
                "category",
                "--model",
                family,
                *params,
                "--json",
            )
        )
        found[family] = out["uri"].rsplit("/", 1)[1]
        print(f"  {out['uri']} in {time.perf_counter() - start:.0f} s", flush=True)
    return found


def split_queries(texts: list[str], queries: int) -> tuple[list[str], pd.DataFrame]:
    """Query texts, and the bundled tickets that do not contain them (the indexed side)."""
    frame = pd.read_csv(DATA)
    chosen = set(texts[:queries])
    return texts[:queries], frame[~frame["text"].astype(str).isin(chosen)]


def prepare_kb(home: Path, tickets: pd.DataFrame) -> None:
    marker = home / "kb-imported"
    if marker.exists():
        print("reusing the knowledge base", flush=True)
        return
    path = home / "kb-tickets.csv"
    tickets.to_csv(path, index=False)
    start = time.perf_counter()
    deskpilot(home, "kb", "import", str(ARTICLES), "--tenant", TENANT, "--no-build")
    deskpilot(home, "kb", "import", str(path), "--tenant", TENANT, "--label-column", "category")
    print(f"knowledge base: {len(tickets):,} tickets + articles in {time.perf_counter() - start:.0f} s")
    marker.touch()


# ----------------------------------------------------------------------------------------------- measure


def metrics(port: int) -> dict[str, float]:
    """Sums of the counters this bench reads, by name and (for tokens) direction."""
    _, raw = http_get(port, "/metrics", timeout=5)
    out: dict[str, float] = {}
    for line in raw.decode().splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, _, value = line.rpartition(" ")
        base = name.split("{", 1)[0]
        if base == "deskpilot_copilot_llm_tokens_total":
            base += ".prompt" if 'direction="prompt"' in name else ".completion"
        if base == "deskpilot_copilot_suggestions_total":
            base += ".draft" if 'outcome="draft"' in name else ".other"
        out[base] = out.get(base, 0.0) + float(value)
    return out


def measure(
    server: Server, files: tuple[Path, Path], concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    bodies, lua = files
    run_wrk(server, bodies, lua, concurrency, args.warmup)
    procs = server.tree()
    before = metrics(server.port)
    load_before = os.getloadavg()[0]
    cpu0 = server.cpu_s(procs)
    load: Load = run_wrk(server, bodies, lua, concurrency, args.duration)
    cpu = server.cpu_s(procs) - cpu0
    after = metrics(server.port)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    return {
        "concurrency": concurrency,
        "req_s": load.requests / load.seconds,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
        "errors": load.errors,
        "requests": load.requests,
        "server_cpu_s": cpu,
        "server_cores": cpu / load.seconds,
        "req_per_cpu_s": load.requests / cpu if cpu else float("nan"),
        "cpu_ms_per_req": 1000 * cpu / max(load.requests, 1),
        "client_cpu_pct": 100 * load.client_cpu_s / load.seconds,
        "load_avg": f"{load_before:.2f}->{os.getloadavg()[0]:.2f}",
        "counters": delta,
    }


def bench_family(family: str, version: str, ctx: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    set_champion(ctx["home"], version)
    server = start_server(
        ServerSpec(f"DeskPilot {family}", "deskpilot"), ctx["home"], version, ctx["key"], ctx["logs"]
    )
    try:
        check_answer(server, ctx["texts"][0])
        rows = []
        for c in args.concurrency:
            row = measure(server, ctx["files"], c, args)
            rows.append(row)
            print(
                f"  {family:<9} c={c:<3} {row['req_s']:7.0f} req/s  p50 {row['p50_ms']:7.2f}"
                f"  p99 {row['p99_ms']:7.2f} ms  err {row['errors']}"
                f"  server {row['server_cores']:.2f} cores, {row['cpu_ms_per_req']:.2f} ms"
                f" CPU/req = {row['req_per_cpu_s']:.0f} req per CPU-s  wrk {row['client_cpu_pct']:.0f}%"
                f"  load {row['load_avg']}",
                flush=True,
            )
        rss, pss = server.memory_mb()
        procs = len(server.tree())
    finally:
        server.stop()
    print(
        f"  {family:<9} cold start {server.cold_start_s:.1f} s, RSS {rss:.0f} MB, PSS {pss:.0f} MB"
        f" ({procs} processes)"
    )
    return {
        "family": family,
        "version": version,
        "rows": rows,
        "rss_mb": rss,
        "pss_mb": pss,
        "processes": procs,
        "cold_start_s": server.cold_start_s,
    }


def start_stub(tokenizer: Path, logs: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = (logs / "llm-stub.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", STUB, str(port), str(tokenizer)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), 0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the LLM stand-in did not start")


def bench_suggest(ctx: dict[str, Any], args: argparse.Namespace, tfidf: str) -> list[dict[str, Any]]:
    from deskpilot.models.encoder import TOKENIZER_FILE
    from deskpilot.models.encoder_export import ensure_encoder

    tokenizer = ensure_encoder(Path.home() / ".cache" / "deskpilot" / "encoders") / TOKENIZER_FILE
    stub, stub_port = start_stub(tokenizer, ctx["logs"])
    set_champion(ctx["home"], tfidf)
    out = []
    try:
        settings = {
            "extractive": {},
            "llm": {
                "DESKPILOT_LLM_BASE_URL": f"http://{HOST}:{stub_port}/v1",
                "DESKPILOT_LLM_MODEL": "stand-in",
                "DESKPILOT_LLM_PROMPT_PRICE_PER_1K": str(args.prompt_per_1m / 1000),
                "DESKPILOT_LLM_COMPLETION_PRICE_PER_1K": str(args.completion_per_1m / 1000),
            },
        }
        stub_ps = psutil.Process(stub.pid)
        for name, env in settings.items():
            with environment(env):
                server = start_server(
                    ServerSpec(f"DeskPilot suggest {name}", "deskpilot"),
                    ctx["home"],
                    tfidf,
                    ctx["key"],
                    ctx["logs"],
                )
            try:
                server.path = "/v1/suggest"
                body = json.dumps({"text": ctx["queries"][0]}).encode()
                status, raw = http_post(
                    server.port, server.path, body, {"Content-Type": "application/json", **server.headers}
                )
                if status != 200 or "triage" not in json.loads(raw):
                    raise SystemExit(f"suggest: {status} {raw[:500]!r}")
                stub_cpu0 = sum(stub_ps.cpu_times()[:2])
                row = measure(server, ctx["suggest_files"], args.suggest_concurrency, args)
                stub_cpu = sum(stub_ps.cpu_times()[:2]) - stub_cpu0
                rss, pss = server.memory_mb()
            finally:
                server.stop()
            d = row.pop("counters")
            drafts = d.get("deskpilot_copilot_suggestions_total.draft", 0.0)
            suggestions = drafts + d.get("deskpilot_copilot_suggestions_total.other", 0.0)
            prompt = d.get("deskpilot_copilot_llm_tokens_total.prompt", 0.0)
            completion = d.get("deskpilot_copilot_llm_tokens_total.completion", 0.0)
            calls = d.get("deskpilot_copilot_llm_calls_total", 0.0)
            row |= {
                "setting": name,
                "suggestions": suggestions,
                "drafts": drafts,
                "llm_calls": calls,
                "cache_hits": d.get("deskpilot_copilot_llm_cache_hits_total", 0.0),
                "prompt_tokens_per_suggestion": prompt / max(suggestions, 1),
                "completion_tokens_per_suggestion": completion / max(suggestions, 1),
                "prompt_tokens_per_call": prompt / calls if calls else 0.0,
                "completion_tokens_per_call": completion / calls if calls else 0.0,
                "usd_per_1000_suggestions": 1000
                * d.get("deskpilot_copilot_llm_cost_usd_total", 0.0)
                / max(suggestions, 1),
                "stub_cpu_ms_per_call": 1000 * stub_cpu / calls if calls else 0.0,
                "rss_mb": rss,
                "pss_mb": pss,
            }
            out.append(row)
            print(
                f"  suggest {name:<10} c={row['concurrency']} {row['req_s']:6.1f} req/s"
                f"  p50 {row['p50_ms']:7.1f}  p99 {row['p99_ms']:7.1f} ms  err {row['errors']}"
                f"  {row['cpu_ms_per_req']:.1f} ms server CPU/req"
                f" = {row['req_per_cpu_s']:.0f} per CPU-s  drafts {drafts:.0f}/{suggestions:.0f}"
                f"  LLM calls {calls:.0f} (cache hits {row['cache_hits']:.0f})  tokens/suggestion"
                f" {row['prompt_tokens_per_suggestion']:.0f}+{row['completion_tokens_per_suggestion']:.0f}"
                f"  USD/1k {row['usd_per_1000_suggestions']:.4f}  RSS {rss:.0f} MB  load {row['load_avg']}",
                flush=True,
            )
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    return out


# ------------------------------------------------------------------------------------------------ report


def report(families: list[dict[str, Any]], drafts: list[dict[str, Any]]) -> None:
    print(
        "\n| family | c | req/s | p50 ms | p99 ms | errors | server cores | CPU ms/req | req per CPU-s"
        " | wrk % | load avg |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for f in families:
        for r in f["rows"]:
            print(
                f"| {f['family']} | {r['concurrency']} | {r['req_s']:,.0f} | {r['p50_ms']:.2f}"
                f" | {r['p99_ms']:.2f} | {r['errors']} | {r['server_cores']:.2f} | {r['cpu_ms_per_req']:.2f}"
                f" | {r['req_per_cpu_s']:,.0f} |"
                f" {r['client_cpu_pct']:.0f} | {r['load_avg']} |"
            )
    print("\n| family | best req per CPU-s | at c | RSS MB (1 worker) | PSS MB | cold start s |")
    print("|---|---:|---:|---:|---:|---:|")
    base = None
    for f in families:
        best = max(f["rows"], key=lambda r: r["req_per_cpu_s"])
        base = base or best["req_per_cpu_s"]
        print(
            f"| {f['family']} | {best['req_per_cpu_s']:,.0f} ({best['req_per_cpu_s'] / base:.2f}x tfidf) |"
            f" {best['concurrency']} | {f['rss_mb']:,.0f} | {f['pss_mb']:,.0f} | {f['cold_start_s']:.1f} |"
        )
    if drafts:
        print(
            "\n| suggest setting | c | req/s | p50 ms | p99 ms | CPU ms/suggestion | suggestions per CPU-s |"
            " drafts | LLM calls | prompt tok/suggestion | completion tok/suggestion | load avg |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for d in drafts:
            print(
                f"| {d['setting']} | {d['concurrency']} | {d['req_s']:.1f} | {d['p50_ms']:.1f}"
                f" | {d['p99_ms']:.1f} | {d['cpu_ms_per_req']:.1f} | {d['req_per_cpu_s']:.0f}"
                f" | {d['drafts']:.0f}/{d['suggestions']:.0f} |"
                f" {d['llm_calls']:.0f} | {d['prompt_tokens_per_suggestion']:.0f} |"
                f" {d['completion_tokens_per_suggestion']:.0f} | {d['load_avg']} |"
            )
        if len(drafts) == 2 and drafts[0]["cpu_ms_per_req"]:
            print(
                "llm / extractive server CPU per suggestion ="
                f" {drafts[1]['cpu_ms_per_req'] / drafts[0]['cpu_ms_per_req']:.2f}"
            )


def main() -> None:  # noqa: PLR0915
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--families", nargs="*", default=list(TINY), choices=list(TINY), help="none: drafts only"
    )
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32, 64])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded seconds per level")
    parser.add_argument("--texts", type=int, default=2000, help="distinct triage texts")
    parser.add_argument("--queries", type=int, default=3000, help="suggest texts, left out of the index")
    parser.add_argument("--suggest-concurrency", type=int, default=8)
    parser.add_argument("--no-suggest", action="store_true")
    parser.add_argument("--small-rows", type=int, default=1540, help="training rows of the tiny families")
    parser.add_argument(
        "--prompt-per-1m", type=float, default=0.15, help="USD, for the server's cost counter"
    )
    parser.add_argument("--completion-per-1m", type=float, default=0.60)
    parser.add_argument("--home", type=Path, help="DESKPILOT_HOME to create or reuse (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"

    temp = tempfile.TemporaryDirectory(prefix="capacity_bench_")
    home = args.home.resolve() if args.home else Path(temp.name) / "home"
    work = Path(temp.name)
    (work / "logs").mkdir()
    print(f"{os.cpu_count()} CPUs; load average before preparing {loadavg()}", flush=True)
    versions = prepare(home, args.families or ["tfidf"], args.small_rows)
    key = json.loads(deskpilot(home, "keys", "create", "--tenant", TENANT, "--label", "capacity", "--json"))[
        "key"
    ]
    frame = pd.read_csv(DATA)
    pool = frame["text"].astype(str).drop_duplicates().sample(frac=1.0, random_state=0).tolist()
    texts = pool[: args.texts]
    queries, tickets = split_queries(pool[args.texts :], args.queries)
    if not args.no_suggest:
        prepare_kb(home, tickets)
    (work / "triage").mkdir()
    (work / "suggest").mkdir()
    tri = write_wrk_files(work / "triage", texts)
    sug = write_wrk_files(work / "suggest", queries)
    ctx: dict[str, Any] = {
        "home": home,
        "key": key,
        "logs": work / "logs",
        "texts": texts,
        "queries": queries,
        "files": tri["deskpilot"],
        "suggest_files": sug["deskpilot"],
    }
    original = registry(home).alias_version(NAME, "champion")
    print(
        f"wrk; {args.duration:g} s measured after {args.warmup:g} s warm-up per level; concurrency"
        f" {args.concurrency}; load average before measuring {loadavg()}",
        flush=True,
    )
    results: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "families": [],
        "suggest": [],
    }
    try:
        for family in args.families:
            results["families"].append(bench_family(family, versions[family], ctx, args))
        if not args.no_suggest:
            results["suggest"] = bench_suggest(ctx, args, versions["tfidf"])
    finally:
        if original is not None:
            set_champion(home, original)
    report(results["families"], results["suggest"])
    print(f"\nload average after the run: {loadavg()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
    temp.cleanup()


if __name__ == "__main__":
    main()
