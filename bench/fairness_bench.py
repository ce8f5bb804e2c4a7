"""Tenant fairness under load: how much a noisy tenant slows a quiet one, and who is refused.

One ``deskpilot serve`` process (tfidf champion trained on the bundled data, default limits: 200 tickets/s
and a burst of 400 per tenant, the model queue bounded at 2,000,000 characters, a 2 s model budget) is
started as a subprocess; the load comes from this process (asyncio + httpx, loopback only). Scenarios, each
``--duration`` seconds after a ``--warmup``:

* ``alone``: the quiet tenant alone, single-ticket requests (texts from the bundled data) paced at
  ``--quiet-rps``, one at a time;
* ``within-limits``: the same, plus four noisy tenants each sending batches of 256 tickets of 1,500
  characters, paced so that each stays within its rate limit (one batch every 1.3 s: 197 tickets/s) -- the
  security finding's scenario;
* ``flood``: the quiet tenant plus one noisy tenant on four connections sending those batches back to back
  (far over its limit).

For every scenario: the quiet tenant's p50/p90/p99/max latency and its statuses, the noisy tenants' statuses.
``--src DIR`` runs the server from another source tree (e.g. the commit before the fix, exported with
``git archive``), so before and after are measured on the same machine minutes apart. Every server and the
load share the same cores: compare within a run.

    .venv/bin/python bench/fairness_bench.py [--home DIR] [--src DIR] [--duration 8] [--warmup 2]
        [--quiet-rps 20] [--scenarios alone within-limits flood] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "banking77" / "train.csv"
HOST = "127.0.0.1"
QUIET = "quiet-key-0123456789abcdef"
NOISY = [f"noisy{i}-key-0123456789abcdef" for i in range(4)]
BATCH_ITEMS, BATCH_CHARS, BATCH_PERIOD_S = 256, 1_500, 1.3


@dataclass
class Outcome:
    scenario: str
    quiet_sent: int = 0
    quiet_status: dict[str, int] = field(default_factory=dict)
    quiet_fallback: int = 0  # answered 200, but by the fallback model (the champion ran out of time)
    quiet_p50_ms: float = 0.0
    quiet_p90_ms: float = 0.0
    quiet_p99_ms: float = 0.0
    quiet_max_ms: float = 0.0
    noisy_status: dict[str, int] = field(default_factory=dict)
    noisy_tickets_answered: int = 0
    server: dict[str, float] = field(default_factory=dict)  # shed, fallback and model-time counters


def run_cli(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-c", "from deskpilot.cli.main import run; run()", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"deskpilot {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def environment(home: Path, src: Path) -> dict[str, str]:
    keys = [f"quiet:{QUIET}", *(f"noisy{i}:{key}" for i, key in enumerate(NOISY))]
    return os.environ | {
        "DESKPILOT_HOME": str(home),
        "DESKPILOT_API_KEYS": ",".join(keys),
        "PYTHONPATH": str(src),
        "HF_HUB_OFFLINE": "1",
    }


def prepare(home: Path, env: dict[str, str]) -> None:
    if (home / "mlflow.db").exists():
        print(f"reusing the model in {home}", flush=True)
        return
    home.mkdir(parents=True, exist_ok=True)
    print(f"training tfidf on {DATA.name} ...", flush=True)
    started = time.perf_counter()
    out = run_cli(
        env, "train", "--data", str(DATA), "--label-column", "category", "--model", "tfidf", "--json"
    )
    print(f"  {json.loads(out)['uri']} in {time.perf_counter() - started:.0f} s", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if process.poll() is not None:
                raise SystemExit("the server exited during start-up")
            try:
                if (await client.get(f"{url}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the server never became ready")


def quiet_texts() -> list[str]:
    texts = pd.read_csv(DATA)["text"].astype(str).tolist()
    random.Random(0).shuffle(texts)
    return texts[:2_000]


def noisy_body() -> bytes:
    words = pd.read_csv(DATA)["text"].astype(str).tolist()
    rng = random.Random(1)
    items = []
    for _ in range(BATCH_ITEMS):
        text = ""
        while len(text) < BATCH_CHARS:
            text += rng.choice(words) + " "
        items.append({"text": text[:BATCH_CHARS].strip()})
    return json.dumps({"items": items}).encode()


async def quiet_client(
    url: str, texts: list[str], rps: float, until: float, measure_from: float
) -> tuple[list[float], Counter[str]]:
    """Open loop: a request every 1/rps seconds whatever the answers do (a slow server does not slow the
    sender, so its queueing shows in the latencies), each timed from send to full answer."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {QUIET}"}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)

    async def one(client: httpx.AsyncClient, text: str, measured: bool) -> None:
        started = time.monotonic()
        try:
            response = await client.post("/v1/triage", json={"text": text})
            status = str(response.status_code)
            if status == "200" and response.json()["fallback"]:
                status = "200-fallback"
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        if measured:
            latencies.append((time.monotonic() - started) * 1000.0)
            statuses[status] += 1

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:
        sent: list[asyncio.Task[None]] = []
        next_at = time.monotonic()
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            text = texts[len(sent) % len(texts)]
            sent.append(asyncio.create_task(one(client, text, time.monotonic() >= measure_from)))
            next_at += 1.0 / rps
        await asyncio.gather(*sent)
    return latencies, statuses


async def noisy_client(
    url: str, key: str, body: bytes, period_s: float, until: float, measure_from: float
) -> tuple[Counter[str], int]:
    statuses: Counter[str] = Counter()
    answered = 0
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                response = await client.post("/v1/triage/batch", content=body)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            if started >= measure_from:
                statuses[status] += 1
                answered += BATCH_ITEMS if status == "200" else 0
            await asyncio.sleep(max(0.0, started + period_s - time.monotonic()))
    return statuses, answered


async def scenario(name: str, url: str, args: argparse.Namespace) -> Outcome:
    texts, body = quiet_texts(), noisy_body()
    start = time.monotonic()
    measure_from, until = start + args.warmup, start + args.warmup + args.duration
    noisy: list[asyncio.Task[tuple[Counter[str], int]]] = []
    if name == "within-limits":
        noisy = [
            asyncio.create_task(noisy_client(url, key, body, BATCH_PERIOD_S, until, measure_from))
            for key in NOISY
        ]
    elif name == "flood":
        noisy = [
            asyncio.create_task(noisy_client(url, NOISY[0], body, 0.0, until, measure_from)) for _ in range(4)
        ]
    latencies, statuses = await quiet_client(url, texts, args.quiet_rps, until, measure_from)
    outcome = Outcome(name, quiet_sent=len(latencies), quiet_status=dict(statuses))
    outcome.quiet_fallback = statuses.pop("200-fallback", 0)
    outcome.quiet_status = dict(statuses + Counter({"200": outcome.quiet_fallback}))
    if len(latencies) >= 2:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        outcome.quiet_p50_ms, outcome.quiet_p90_ms, outcome.quiet_p99_ms = cuts[49], cuts[89], cuts[98]
        outcome.quiet_max_ms = max(latencies)
    noisy_status: Counter[str] = Counter()
    for statuses_of_one, answered in await asyncio.gather(*noisy):
        noisy_status.update(statuses_of_one)
        outcome.noisy_tickets_answered += answered
    outcome.noisy_status = dict(noisy_status)
    outcome.server = await server_counters(url)
    return outcome


async def server_counters(url: str) -> dict[str, float]:
    """Shed and fallback counts, and model calls and seconds per role, from the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics", timeout=10)).text
    wanted = {
        "deskpilot_shed_total": "reason",
        "deskpilot_fallback_total": "reason",
        "deskpilot_model_latency_seconds_sum": "role",
        "deskpilot_model_latency_seconds_count": "role",
    }
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted and sample.value:
                found[f"{sample.name}{{{sample.labels.get(wanted[sample.name], '')}}}"] = round(
                    sample.value, 3
                )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="keep the trained home here")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the source tree the server runs")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--quiet-rps", type=float, default=20.0)
    parser.add_argument("--scenarios", nargs="+", default=["alone", "within-limits", "flood"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    home = (args.home or Path(tempfile.mkdtemp(prefix="deskpilot-fairness-"))).resolve()
    env = environment(home, args.src.resolve())
    prepare(home, env)
    results = []
    for name in args.scenarios:
        port = free_port()
        url = f"http://{HOST}:{port}"
        logs = home / f"serve-{name}.log"
        with logs.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from deskpilot.cli.main import run; run()",
                    "serve",
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            try:
                asyncio.run(wait_ready(url, process))
                outcome = asyncio.run(scenario(name, url, args))
            finally:
                process.terminate()
                process.wait(30)
        results.append(outcome)
        print(json.dumps(asdict(outcome)), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
