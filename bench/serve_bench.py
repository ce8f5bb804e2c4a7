"""Serving: DeskPilot's API vs `mlflow models serve` of the same registered model vs the in-process model.

For each model (tfidf, and embed as the best model that trains in about a minute here; finetune and the
ensemble take ~30 min to train, so they are left out), in one run and on the same registry:

* in-process: ``TriageModel.predict`` of one text (p50/p99 over --inproc-texts texts) and the throughput of
  64-text batches, the physical limit of any server, measured right before each server starts (so the c=1
  overhead compares DeskPilot with a baseline taken on the same, shared machine moments earlier), and again
  right after each server at that server's own c=1 pace, idle between calls (see ``in_process_paced``);
* servers, started one at a time as subprocesses and alternated (DeskPilot with 1 and 2 workers, mlflow
  --workers 1 and 2; --rounds repeats the cycle, rotating the order): ``deskpilot serve --workers N`` (rate
  limit off, JSON logs to a file, everything else default: micro-batching, PII redaction, decision store,
  registry watcher) and
  ``mlflow models serve -m models:/NAME/VERSION --env-manager local --workers N``. Each is timed from spawn to
  its first 200 on the readiness route (/readyz, /ping: "cold start"), then loaded closed-loop at each
  --concurrency (--warmup s discarded, then --duration s measured): throughput, p50, p99, errors (non-2xx,
  socket errors, timeouts), the server tree's CPU ms per request and the load generator's CPU share. After
  the load: resident memory of the whole process tree (RSS summed; PSS too, which counts shared pages once).

Requests are single-message triage with texts sampled (seed 0) from the bundled data, the same sequence for
every server: DeskPilot ``POST /v1/triage {"text"}`` with a bearer key, mlflow ``POST /invocations
{"dataframe_records": [{"text"}]}``. The load generator is ``wrk`` (Debian package; C, epoll, one thread,
one keep-alive connection per concurrent user, requests pre-formatted in Lua at start-up, latency from
write to full response, percentiles from its exact histogram): it used 1-3% of a core at ~400 req/s where
the Python client below used 3-4%, so it disturbs the servers least. ``--client python`` is a uvloop + raw
HTTP/1.1 keep-alive client (pre-encoded requests, responses read by Content-Length) for machines without
wrk. Every server and the generator share the same cores, so compare
ratios within a run, not absolute numbers across runs.

    .venv/bin/python bench/serve_bench.py [--models tfidf embed] [--duration 10] [--warmup 3]
        [--concurrency 1 8 32] [--rounds 1] [--home DIR] [--client wrk|python] [--json OUT]

``--home DIR`` keeps the prepared DESKPILOT_HOME (trained via ``deskpilot train`` on
data/banking77/train.csv, label column ``category``) so later runs skip training.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "banking77" / "train.csv"
BIN = Path(sys.executable).parent
NAME = "deskpilot-triage"
HOST = "127.0.0.1"

WRK_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local reqs, n, i = {}, 0, 0
function init(args)
  if args[2] ~= nil and args[2] ~= "" then wrk.headers["Authorization"] = args[2] end
  for line in io.lines(args[1]) do
    n = n + 1
    reqs[n] = wrk.format(nil, nil, nil, line)
  end
end
function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


# ----------------------------------------------------------------------------------------------- setup


def deskpilot(home: Path, *args: str) -> str:
    env = os.environ | {"DESKPILOT_HOME": str(home)}
    done = subprocess.run(
        [str(BIN / "deskpilot"), *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"deskpilot {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def registry(home: Path) -> Any:
    from deskpilot.registry.mlflow_registry import MlflowRegistry

    return MlflowRegistry(
        f"sqlite:///{(home / 'mlflow.db').resolve()}",
        artifact_root=home / "mlartifacts",
        cache_dir=home / "cache" / "models",
    )


def prepare(home: Path, families: list[str]) -> dict[str, str]:
    """The newest registered version of each family (trained with the real CLI when missing)."""
    home.mkdir(parents=True, exist_ok=True)
    found: dict[str, str] = {}
    if (home / "mlflow.db").exists():
        for v in registry(home).versions(NAME):  # newest first
            found.setdefault(v.family, v.version)
    for family in families:
        if family in found:
            print(f"reusing models:/{NAME}/{found[family]} ({family}) in {home}", flush=True)
            continue
        print(f"training {family} on {DATA.name} ...", flush=True)
        start = time.perf_counter()
        out = json.loads(
            deskpilot(
                home, "train", "--data", str(DATA), "--label-column", "category", "--model", family, "--json"
            )
        )
        found[family] = out["uri"].rsplit("/", 1)[1]
        print(f"  {out['uri']} in {time.perf_counter() - start:.0f} s", flush=True)
    return found


def texts_sample(n: int) -> list[str]:
    frame = pd.read_csv(DATA)
    texts = frame["text"].astype(str).tolist()
    return random.Random(0).sample(texts, min(n, len(texts)))


# ------------------------------------------------------------------------------------------- in-process


def load_model(home: Path, version: str) -> Any:
    from deskpilot.domain import ModelRef

    return registry(home).load(ModelRef(NAME, version=version))


def in_process(model: Any, texts: list[str]) -> dict[str, float]:
    """One text per call (p50/p99), then 64-text batches for at least a second."""
    for text in texts[:20]:
        model.predict([text])
    timings = []
    for text in texts:
        start = time.perf_counter()
        model.predict([text])
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    done, start = 0, time.perf_counter()
    while done < 128 or time.perf_counter() - start < 1.0:
        offset = done % len(texts)
        batch = (texts[offset:] + texts)[:64]
        model.predict(batch)
        done += len(batch)
    return {
        "p50_ms": statistics.median(timings),
        "p99_ms": timings[int(0.99 * (len(timings) - 1))],
        "single_per_s": 1000.0 / statistics.mean(timings),
        "batch64_per_s": done / (time.perf_counter() - start),
    }


def in_process_paced(model: Any, texts: list[str], period_s: float) -> float:
    """p50 ms of one-text predicts started every ``period_s`` (a server's c=1 pace), idle in between.

    A predict right after another runs on warm caches and a busy core; one that follows an idle gap, as
    every request of a lone client does, took up to twice as long on this machine. This is the in-process
    model at the server's own request rate, with no server: what the c=1 p50 would be with zero overhead.
    """
    timings = []
    for text in texts:
        start = time.perf_counter()
        model.predict([text])
        timings.append((time.perf_counter() - start) * 1000)
        time.sleep(max(0.0, start + period_s - time.perf_counter()))
    return statistics.median(timings)


# ---------------------------------------------------------------------------------------------- servers


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``start_server`` and ``deskpilot`` copy os.environ: set what they should see, then put it back."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class ServerSpec:
    label: str
    kind: str  # deskpilot | mlflow
    workers: int = 1


@dataclass
class Server:
    spec: ServerSpec
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    cold_start_s: float = 0.0
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    ready_path: str = ""

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def cpu_s(self, procs: list[psutil.Process]) -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def memory_mb(self) -> tuple[float, float]:
        rss = pss = 0.0
        for p in self.tree():
            try:
                info = p.memory_full_info()
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
            except psutil.NoSuchProcess:
                pass
        return rss / 2**20, pss / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own session, started below
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_server(spec: ServerSpec, home: Path, version: str, key: str, logs: Path) -> Server:
    port = free_port()
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if spec.kind == "deskpilot":
        env |= {"DESKPILOT_HOME": str(home), "DESKPILOT_RATE_LIMIT_PER_S": "0"}
        cmd = [str(BIN / "deskpilot"), "serve", "--host", HOST, "--port", str(port)]
        cmd += ["--workers", str(spec.workers)]
        path, ready = "/v1/triage", "/readyz"
        headers = {"Authorization": f"Bearer {key}"}
    else:
        env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{(home / 'mlflow.db').resolve()}"}
        cmd = [
            str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}/{version}",
            "--env-manager", "local", "--workers", str(spec.workers), "--host", HOST, "--port", str(port),
        ]  # fmt: skip
        path, ready, headers = "/invocations", "/ping", {}
    log = logs / f"{spec.label.replace(' ', '_')}-{port}.log"
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(spec, port, proc, log, path=path, headers=headers, ready_path=ready)
    deadline = started + 180
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{spec.label} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status, _ = http_get(port, ready, timeout=0.5)
            if status == 200:
                break
        except OSError:
            pass
        if time.perf_counter() > deadline:
            server.stop()
            raise SystemExit(f"{spec.label} not ready after 180 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
    server.cold_start_s = time.perf_counter() - started
    return server


def body_for(kind: str, text: str) -> str:
    payload: dict[str, Any] = (
        {"text": text} if kind == "deskpilot" else {"dataframe_records": [{"text": text}]}
    )
    return json.dumps(payload)


def check_answer(server: Server, text: str) -> str:
    """One request outside the load, to prove the server answers what it should."""
    status, raw = http_post(
        server.port,
        server.path,
        body_for(server.spec.kind, text).encode(),
        {"Content-Type": "application/json", **server.headers},
    )
    if status != 200:
        raise SystemExit(f"{server.spec.label}: {status} {raw[:500]!r}")
    data = json.loads(raw)
    intent = data["intent"] if server.spec.kind == "deskpilot" else data["predictions"][0]["intent"]
    return str(intent)


# ------------------------------------------------------------------------------------------ load clients


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cpu_s: float


def run_wrk(server: Server, bodies: Path, lua: Path, concurrency: int, seconds: float) -> Load:
    auth = server.headers.get("Authorization", "")
    cmd = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(lua), f"http://{HOST}:{server.port}{server.path}", "--", str(bodies), auth,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in output.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({proc.returncode}):\n{output}")
    r = json.loads(line[len("WRKJSON ") :])
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return Load(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        errors=errors,
        client_cpu_s=usage.ru_utime + usage.ru_stime,
    )


async def _python_load(server: Server, bodies: list[bytes], concurrency: int, seconds: float) -> Load:
    head = f"POST {server.path} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in server.headers.items())
    requests = [head.encode() + b"Content-Length: %d\r\n\r\n" % len(b) + b for b in bodies]
    counter = 0
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter

    async def user() -> None:
        nonlocal counter, errors
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            while clock() < stop_at:
                request = requests[counter % len(requests)]
                counter += 1
                start = clock()
                writer.write(request)
                header = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in header.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                        break
                await reader.readexactly(length)
                latencies.append(clock() - start)
                if header[9:12] != b"200":
                    errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
        finally:
            writer.close()

    cpu0 = time.process_time()
    began = clock()
    stop_at = began + seconds
    await asyncio.gather(*(user() for _ in range(concurrency)))
    elapsed = clock() - began
    latencies.sort()
    return Load(
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=statistics.median(latencies) * 1000 if latencies else float("nan"),
        p99_ms=latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else float("nan"),
        errors=errors,
        client_cpu_s=time.process_time() - cpu0,
    )


def run_python(server: Server, bodies: list[bytes], concurrency: int, seconds: float) -> Load:
    coroutine = _python_load(server, bodies, concurrency, seconds)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# ------------------------------------------------------------------------------------------------ bench


@dataclass
class Row:
    round: int
    model: str
    server: str
    concurrency: int
    req_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    server_cpu_ms_per_req: float
    client_cpu_pct: float
    note: str = ""


def deskpilot_metrics(port: int) -> dict[str, float]:
    _, raw = http_get(port, "/metrics", timeout=5)
    wanted = {
        "deskpilot_batch_size_sum": 0.0,
        "deskpilot_batch_size_count": 0.0,
        "deskpilot_fallback_total": 0.0,
        "deskpilot_store_dropped_total": 0.0,
    }
    for line in raw.decode().splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        base = name.split("{", 1)[0]
        if base in wanted and 'role="fallback"' not in name:
            wanted[base] += float(value)
    return wanted


def bench_server(
    spec: ServerSpec,
    args: argparse.Namespace,
    ctx: dict[str, Any],
    rnd: int,
    model: str,
) -> tuple[list[Row], dict[str, Any]]:
    server = start_server(spec, ctx["home"], ctx["version"], ctx["key"], ctx["logs"])
    try:
        intent = check_answer(server, ctx["texts"][0])
        procs = server.tree()
        rows = []
        for c in args.concurrency:
            if args.client == "wrk":
                bodies, lua = ctx["wrk_files"][spec.kind]
                run_wrk(server, bodies, lua, c, args.warmup)
            else:
                run_python(server, ctx["bodies"][spec.kind], c, args.warmup)
            before = deskpilot_metrics(server.port) if spec.kind == "deskpilot" else {}
            cpu0 = server.cpu_s(procs)
            if args.client == "wrk":
                load = run_wrk(server, bodies, lua, c, args.duration)
            else:
                load = run_python(server, ctx["bodies"][spec.kind], c, args.duration)
            cpu = server.cpu_s(procs) - cpu0
            note = ""
            if before:  # what DeskPilot did inside: model batch size and fallbacks during this level
                after = deskpilot_metrics(server.port)
                delta = {k: after[k] - before[k] for k in after}
                batches = max(delta["deskpilot_batch_size_count"], 1)
                note = (
                    f"mean model batch {delta['deskpilot_batch_size_sum'] / batches:.1f}, "
                    f"fallbacks {delta['deskpilot_fallback_total']:.0f}"
                )
            rows.append(
                Row(
                    round=rnd,
                    model=model,
                    server=spec.label,
                    concurrency=c,
                    req_s=load.requests / load.seconds,
                    p50_ms=load.p50_ms,
                    p99_ms=load.p99_ms,
                    errors=load.errors,
                    requests=load.requests,
                    server_cpu_ms_per_req=1000 * cpu / max(load.requests, 1),
                    client_cpu_pct=100 * load.client_cpu_s / load.seconds,
                    note=note,
                )
            )
            r = rows[-1]
            print(
                f"  [{model} r{rnd}] {spec.label:<17} c={c:<3} {r.req_s:8.0f} req/s  p50 {r.p50_ms:7.2f} ms"
                f"  p99 {r.p99_ms:7.2f} ms  errors {r.errors}"
                f"  server CPU {r.server_cpu_ms_per_req:.2f} ms/req"
                f"  client CPU {r.client_cpu_pct:.0f}%  {note}",
                flush=True,
            )
        rss, pss = server.memory_mb()
        info: dict[str, Any] = {
            "round": rnd,
            "model": model,
            "server": spec.label,
            "cold_start_s": server.cold_start_s,
            "rss_mb": rss,
            "pss_mb": pss,
            "processes": len(server.tree()),
            "first_intent": intent,
            "load_avg_1m": os.getloadavg()[0],
        }
        print(
            f"  [{model} r{rnd}] {spec.label:<17} cold start {server.cold_start_s:.2f} s, RSS {rss:.0f} MB"
            f" (PSS {pss:.0f} MB, {info['processes']} processes); load average {info['load_avg_1m']:.2f}",
            flush=True,
        )
        return rows, info
    finally:
        server.stop()


def write_wrk_files(work: Path, texts: list[str]) -> dict[str, tuple[Path, Path]]:
    lua = work / "triage.lua"
    lua.write_text(WRK_LUA)
    files = {}
    for kind in ("deskpilot", "mlflow"):
        bodies = work / f"bodies-{kind}.jsonl"
        bodies.write_text("".join(body_for(kind, t) + "\n" for t in texts))
        files[kind] = (bodies, lua)
    return files


def set_champion(home: Path, version: str) -> None:
    registry(home).set_alias(NAME, "champion", version)


def median_rows(rows: list[Row]) -> list[dict[str, Any]]:
    """One row per (server, concurrency): the median over rounds (errors summed)."""
    out: dict[tuple[str, int], list[Row]] = {}
    for r in rows:
        out.setdefault((r.server, r.concurrency), []).append(r)
    merged = []
    for (server, c), group in out.items():
        merged.append(
            {
                "server": server,
                "concurrency": c,
                "req_s": statistics.median(r.req_s for r in group),
                "p50_ms": statistics.median(r.p50_ms for r in group),
                "p99_ms": statistics.median(r.p99_ms for r in group),
                "errors": sum(r.errors for r in group),
                "server_cpu_ms_per_req": statistics.median(r.server_cpu_ms_per_req for r in group),
                "client_cpu_pct": statistics.median(r.client_cpu_pct for r in group),
                "rounds": len(group),
                "note": " | ".join(r.note for r in group if r.note),
            }
        )
    return merged


def report(
    model: str, inproc: list[dict[str, Any]], rows: list[Row], infos: list[dict[str, Any]]
) -> dict[str, Any]:
    table = median_rows(rows)
    ip = {
        k: statistics.median(d[k] for d in inproc)
        for k in ("p50_ms", "p99_ms", "single_per_s", "batch64_per_s")
    }
    print(f"\n=== {model} (medians over {len({r.round for r in rows})} round(s)) ===")
    head = f"{'server':<20}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    print(f"{head}{'srv CPU ms/req':>16}{'gen CPU %':>11}  DeskPilot inside")
    single = f"{ip['single_per_s']:>10.0f}{ip['p50_ms']:>9.2f}{ip['p99_ms']:>9.2f}"
    print(f"{'in-process 1 text':<20}{'-':>5}{single}{'-':>8}")
    print(f"{'in-process batch 64':<20}{'-':>5}{ip['batch64_per_s']:>10.0f}{'-':>9}{'-':>9}{'-':>8}")
    for t in table:
        print(
            f"{t['server']:<20}{t['concurrency']:>5}{t['req_s']:>10.0f}{t['p50_ms']:>9.2f}{t['p99_ms']:>9.2f}"
            f"{t['errors']:>8}{t['server_cpu_ms_per_req']:>16.2f}{t['client_cpu_pct']:>11.0f}  {t['note']}"
        )
    by = {(t["server"], t["concurrency"]): t for t in table}
    top = max(c for _, c in by)
    low = min(c for _, c in by)
    summary: dict[str, Any] = {"model": model, "in_process": ip, "top": top, "low": low, "deskpilot": {}}
    peers = [t for t in table if not t["server"].startswith("DeskPilot") and t["concurrency"] == top]
    mlflow_top = max(peers, key=lambda t: t["req_s"]) if peers else None
    for ours in sorted({t["server"] for t in table if t["server"].startswith("DeskPilot")}):
        mine: dict[str, Any] = {}
        dp_top = by.get((ours, top))
        if dp_top is not None and mlflow_top is not None:  # --servers may leave either side out
            mine |= {
                "throughput_ratio": dp_top["req_s"] / mlflow_top["req_s"],
                "best_mlflow": mlflow_top["server"],
                "p99_deskpilot_ms": dp_top["p99_ms"],
                "p99_mlflow_ms": mlflow_top["p99_ms"],
            }
            print(
                f"c={top}: {ours} / best mlflow ({mlflow_top['server']}) throughput ="
                f" {mine['throughput_ratio']:.2f}x (target >= 3x);"
                f" p99 {dp_top['p99_ms']:.1f} ms vs {mlflow_top['p99_ms']:.1f} ms (target: lower)"
            )
        # per round: the c=low p50 minus the in-process p50 measured just before (or paced like) that server
        lone = [
            (r.p50_ms, i)
            for i in infos
            if i["server"] == ours
            for r in rows
            if r.server == ours and r.round == i["round"] and r.concurrency == low
        ]
        overheads = [p50 - i["in_process_p50_ms"] for p50, i in lone]
        paced = [p50 - i["in_process_paced_p50_ms"] for p50, i in lone]
        if overheads:
            mine["c1_overhead_ms"] = statistics.median(overheads)
            mine["c1_overhead_vs_paced_ms"] = statistics.median(paced)
            print(
                f"c={low}: {ours} p50 - in-process p50 (back-to-back, just before it) ="
                f" {mine['c1_overhead_ms']:.2f} ms (target <= 1.5 ms); - in-process p50 at the same pace ="
                f" {mine['c1_overhead_vs_paced_ms']:.2f} ms (medians over rounds)"
            )
        summary["deskpilot"][ours] = mine
    starts: dict[str, list[dict[str, Any]]] = {}
    for info in infos:
        starts.setdefault(info["server"], []).append(info)
    for server, group in starts.items():
        cold = [g["cold_start_s"] for g in group]
        rss = statistics.median(g["rss_mb"] for g in group)
        pss = statistics.median(g["pss_mb"] for g in group)
        print(
            f"{server:<20} cold start {statistics.median(cold):.2f} s (of {len(cold)}: "
            f"{', '.join(f'{c:.2f}' for c in cold)}), RSS {rss:.0f} MB, PSS {pss:.0f} MB,"
            f" {group[0]['processes']} processes"
        )
    summary["table"] = table
    return summary


def run_models(
    args: argparse.Namespace, ctx: dict[str, Any], versions: dict[str, str], specs: list[ServerSpec]
) -> dict[str, Any]:
    home = ctx["home"]
    texts = ctx["texts"]
    original_champion = registry(home).alias_version(NAME, "champion")
    summaries = []
    everything: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": [],
        "servers": [],
    }
    try:
        for model in args.models:
            ctx["version"] = versions[model]
            set_champion(home, versions[model])  # DeskPilot serves the champion (and the tfidf fallback)
            rows: list[Row] = []
            infos: list[dict[str, Any]] = []
            inproc = []
            model_obj = load_model(home, versions[model])
            for rnd in range(1, args.rounds + 1):
                shift = (rnd - 1) % len(specs)
                for spec in specs[shift:] + specs[:shift]:
                    # the in-process baseline right before each server, so both see the same machine
                    base = in_process(model_obj, texts[: args.inproc_texts])
                    inproc.append(base | {"before": spec.label})
                    print(
                        f"  [{model} r{rnd}] in-process: 1 text p50 {base['p50_ms']:.2f} ms,"
                        f" p99 {base['p99_ms']:.2f} ms; batch 64 {base['batch64_per_s']:.0f} texts/s",
                        flush=True,
                    )
                    got, info = bench_server(spec, args, ctx, rnd, model)
                    info["in_process_p50_ms"] = inproc[-1]["p50_ms"]
                    lone = min(got, key=lambda r: r.concurrency)
                    paced = in_process_paced(model_obj, texts[: args.inproc_texts], 1.0 / lone.req_s)
                    info["in_process_paced_p50_ms"] = paced
                    print(
                        f"  [{model} r{rnd}] in-process at {spec.label}'s c={lone.concurrency} pace"
                        f" ({lone.req_s:.0f}/s): 1 text p50 {paced:.2f} ms",
                        flush=True,
                    )
                    rows.extend(got)
                    infos.append(info)
            del model_obj
            summaries.append(report(f"{model} (models:/{NAME}/{versions[model]})", inproc, rows, infos))
            everything["rows"] += [asdict(r) for r in rows]
            everything["servers"] += infos
            everything.setdefault("in_process", {})[model] = inproc
    finally:
        if original_champion is not None:
            set_champion(home, original_champion)
    everything["summaries"] = summaries
    return everything


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["tfidf", "embed"], choices=["tfidf", "embed"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded seconds per level")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--home", type=Path, help="DESKPILOT_HOME to create or reuse (default: a temp dir)")
    parser.add_argument(
        "--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    parser.add_argument("--texts", type=int, default=2000, help="distinct request texts")
    parser.add_argument("--inproc-texts", type=int, default=300, help="texts timed one by one in-process")
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=["deskpilot", "deskpilot2", "mlflow1", "mlflow2"],
        default=["deskpilot", "deskpilot2", "mlflow1", "mlflow2"],
    )
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    temp = tempfile.TemporaryDirectory(prefix="serve_bench_")
    home = args.home.resolve() if args.home else Path(temp.name) / "home"
    work = Path(temp.name)
    logs = work / "logs"
    logs.mkdir()
    versions = prepare(home, args.models)
    key = json.loads(
        deskpilot(home, "keys", "create", "--tenant", "bench", "--label", "serve_bench", "--json")
    )["key"]
    texts = texts_sample(args.texts)
    ctx: dict[str, Any] = {
        "home": home,
        "key": key,
        "logs": logs,
        "texts": texts,
        "bodies": {k: [body_for(k, t).encode() for t in texts] for k in ("deskpilot", "mlflow")},
        "wrk_files": write_wrk_files(work, texts),
    }
    catalog = {
        "deskpilot": ServerSpec("DeskPilot", "deskpilot"),
        "deskpilot2": ServerSpec("DeskPilot --workers 2", "deskpilot", 2),
        "mlflow1": ServerSpec("mlflow --workers 1", "mlflow", 1),
        "mlflow2": ServerSpec("mlflow --workers 2", "mlflow", 2),
    }
    specs = [catalog[s] for s in args.servers]
    print(
        f"client {args.client}; {args.duration:g} s measured after {args.warmup:g} s warm-up per level; "
        f"concurrency {args.concurrency}; {os.cpu_count()} CPUs; load before start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    everything = run_models(args, ctx, versions, specs)
    print(f"\nload average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(everything, indent=2, default=str))
    temp.cleanup()


if __name__ == "__main__":
    main()
