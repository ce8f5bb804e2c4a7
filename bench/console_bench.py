"""The agent's console over a million stored decisions (issue 15): queue and ticket pages, with and without
the queue's partial indexes.

The store is a SQLite file migrated to head (``deskpilot.store.migrate.upgrade``) and filled with
``--decisions`` rows (default 1,000,000) through ``sqlite3`` directly: 2 tenants (acme 60%, globex 40%), the
77 Banking77 intents, texts drawn from the bundled Banking77 messages (one in ten with a redaction placeholder
appended, as the service stores them), ~30% routed to a person (confidence 0.05-0.69), the rest auto
(0.70-1.0) of which 5% join the audit sample, 4 channels (and none for 5%), 0.5% answered by the fallback,
timestamps evenly over the 30 days before the fill. 20% of the decisions get a verdict, and 5% of the queued
ones a stored reply suggestion. The secondary indexes are dropped during the fill and built again after it
(the same SQL, read back from ``sqlite_master``); the file is cached under ``bench/.cache/console`` keyed by
its parameters, so a rerun only measures. No ``ANALYZE``: the planner works as on a store nobody tuned.

1. In process (the calls the console's routes make, on ``SqlStore`` and ``SqlKnowledgeStore``): for tenant
   acme, the queue page (``queue_page``, 50 rows, then ``queue_count`` capped at 10,000) with no filter, an
   intent, a channel and a confidence band, the last 24 hours, the second page and the 100th page through
   the cursor, the done tickets, and two filters that match nothing (an unknown intent; an unknown channel,
   which has no index to narrow it and so reads the tenant's whole queue); and the ticket page's reads
   (``get_decision``, ``verdict``, ``latest_suggestion``) of random queued tickets. ``--reps`` each; p50/p95.
2. The same on a copy without the two partial indexes (the schema before migration 0008), the baseline
   (``--baseline-reps``, fewer: its slow scenarios take a second each).
3. Over HTTP: ``deskpilot serve`` (one worker, a separate process) on that database, with a tfidf champion
   trained on Banking77 (``deskpilot train``, cached in the bench home) and an agent's key signed in through
   the console's form; ``GET /console/queue`` (several filters) and ``GET /console/tickets/{id}`` from one
   keep-alive client on 127.0.0.1: the client's time, and the handler's own ``Server-Timing: app``.

    .venv/bin/python bench/console_bench.py [--decisions 1000000] [--reps 100] [--baseline-reps 30]
        [--http-reps 60] [--fresh] [--no-http] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from deskpilot.store import migrate
from deskpilot.store.knowledge_sql import SqlKnowledgeStore
from deskpilot.store.queue import QueueQuery, page_statement
from deskpilot.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "banking77" / "train.csv"
CACHE = ROOT / "bench" / ".cache" / "console"
BIN = Path(sys.executable).parent
FORMAT = 2  # bump when the generated data changes (invalidates the cached database)
SPAN = timedelta(days=30)
CHUNK = 50_000
CHANNELS = ("email", "chat", "phone", "web", None)
CHANNEL_P = (0.38, 0.3, 0.14, 0.13, 0.05)
PAGE = 50
DEEP_PAGE = 100
QUEUE_TARGET_MS, TICKET_TARGET_MS = 150.0, 100.0
PARTIAL = ("ix_decisions_queue", "ix_decisions_queue_intent")
_STAMP = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime on SQLite (naive UTC)


# -- the database ------------------------------------------------------------------------------------------


_DECISION = (
    "INSERT INTO decisions (tenant, request_id, ticket_id, model_name, model_version, intent, confidence, "
    "route, alternatives, latency_ms, text, fallback, reason, created_at, http_request_id, review_sample, "
    f"channel) VALUES ({', '.join('?' * 17)})"
)
_FEEDBACK = (
    "INSERT INTO feedback (tenant, request_id, correct_intent, predicted_intent, model_version, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_SUGGESTION = (
    "INSERT INTO suggestions (tenant, suggestion_id, request_id, intent, route, draft, citations, sources, "
    "reason, provider, model, prompt_version, index_version, flags, prompt_tokens, completion_tokens, "
    f"cost_usd, latency_ms, created_at) VALUES ({', '.join('?' * 19)})"
)


class _Source:
    """The Banking77 texts and labels the decisions draw from, and the generator's state."""

    def __init__(self, seed: int, n: int, end: datetime) -> None:
        frame = pd.read_csv(DATA)
        self.texts = frame["text"].astype(str).tolist()
        self.labels = frame["category"].astype(str).tolist()
        self.intents = sorted(set(self.labels))
        self.rng = np.random.default_rng(seed)
        self.start = (end - SPAN).replace(tzinfo=None)
        self.step = SPAN.total_seconds() / n

    def decisions(self, base: int, size: int) -> list[tuple[Any, ...]]:
        rng, intents = self.rng, self.intents
        tenant = np.where(rng.random(size) < 0.6, "acme", "globex")
        raw = rng.bytes(16 * size)
        pick = rng.integers(0, len(self.texts), size)
        human = rng.random(size) < 0.30
        confidence = np.where(human, rng.uniform(0.05, 0.69, size), rng.uniform(0.70, 1.0, size))
        sampled = ~human & (rng.random(size) < 0.05)
        fallback = rng.random(size) < 0.005
        wrong = rng.random(size) < 0.15
        other = rng.integers(0, len(intents), (size, 3))
        channel = rng.choice(len(CHANNELS), size, p=CHANNEL_P)
        placeholder = rng.random(size) < 0.1
        latency = rng.uniform(1, 6, size)
        rows = []
        for k in range(size):
            conf = float(confidence[k])
            alternatives = [
                {"intent": intents[other[k, 1]], "confidence": round(conf / 3, 4)},
                {"intent": intents[other[k, 2]], "confidence": round(conf / 7, 4)},
            ]
            rows.append(
                (
                    str(tenant[k]),
                    raw[k * 16 : (k + 1) * 16].hex(),
                    None,
                    "deskpilot-triage",
                    "3",
                    intents[other[k, 0]] if wrong[k] else self.labels[pick[k]],
                    round(conf, 6),
                    "human" if human[k] else "auto",
                    json.dumps(alternatives),
                    round(float(latency[k]), 3),
                    self.texts[pick[k]] + (" You can reach me at <EMAIL>." if placeholder[k] else ""),
                    int(fallback[k]),
                    "champion model exceeded its 2s budget" if fallback[k] else "",
                    (self.start + timedelta(seconds=(base + k) * self.step)).strftime(_STAMP),
                    None,
                    int(sampled[k]),
                    CHANNELS[channel[k]],
                )
            )
        return rows

    def verdicts(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """A verdict on 20% of the decisions: the model's intent confirmed (80%) or another one."""
        chosen = self.rng.random(len(rows)) < 0.2
        right = self.rng.random(len(rows)) < 0.8
        others = self.rng.integers(0, len(self.intents), len(rows))
        return [
            (r[0], r[1], r[5] if right[k] else self.intents[others[k]], r[5], "3", r[13])
            for k, r in enumerate(rows)
            if chosen[k]
        ]

    def suggestions(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """A stored reply suggestion for 5% of the queued decisions."""
        chosen = self.rng.random(len(rows)) < 0.05
        return [
            _suggestion(r, f"s-{r[1]}")
            for k, r in enumerate(rows)
            if chosen[k] and (r[7] == "human" or r[15])
        ]


def _fill(path: Path, n: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    migrate.upgrade(f"sqlite:///{path}")
    end = datetime.now(UTC).replace(microsecond=0)
    source = _Source(seed, n, end)
    con = sqlite3.connect(path)
    for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-400000"):
        con.execute(f"PRAGMA {pragma}")
    indexes = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('decisions', 'feedback', 'suggestions')"
    ).fetchall()
    for name, _ in indexes:
        con.execute(f'DROP INDEX "{name}"')
    counts = {"verdicts": 0, "suggestions": 0, "queued_acme": 0}
    for base in range(0, n, CHUNK):
        rows = source.decisions(base, min(CHUNK, n - base))
        verdicts, drafts = source.verdicts(rows), source.suggestions(rows)
        con.executemany(_DECISION, rows)
        con.executemany(_FEEDBACK, verdicts)
        con.executemany(_SUGGESTION, drafts)
        con.commit()
        counts["verdicts"] += len(verdicts)
        counts["suggestions"] += len(drafts)
        counts["queued_acme"] += sum(1 for r in rows if r[0] == "acme" and (r[7] == "human" or r[15]))
    inserted = time.perf_counter() - started
    for _, sql in indexes:
        con.execute(sql)
    con.commit()
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    return {
        "decisions": n,
        **counts,
        "end": end.isoformat(),
        "insert_s": round(inserted, 1),
        "fill_s": round(time.perf_counter() - started, 1),
    }


def _suggestion(row: tuple[Any, ...], suggestion_id: str) -> tuple[Any, ...]:
    sources = json.dumps([{"number": 1, "id": "kb-1", "kind": "article", "score": 0.5}])
    return (
        row[0], suggestion_id, row[1], row[5], row[7], "Thanks for getting in touch. [1]", "[1]", sources,
        "grounded draft", "extractive", None, "reply-v1", 1, "[]", 0, 0, 0.0, 12.0, row[13],
    )  # fmt: skip


def database(n: int, seed: int, fresh: bool) -> tuple[Path, dict[str, Any]]:
    key = hashlib.sha256(json.dumps([FORMAT, n, seed, str(DATA.stat().st_size)]).encode()).hexdigest()[:12]
    folder = CACHE / f"db-{key}"
    path, meta_path = folder / "console.db", folder / "meta.json"
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        print(f"reusing {path} ({n:,} decisions, filled in {meta['fill_s']} s)", flush=True)
        return path, meta
    folder.mkdir(parents=True, exist_ok=True)
    print(f"filling {path} with {n:,} decisions ...", flush=True)
    meta = _fill(path, n, seed)
    meta_path.write_text(json.dumps(meta))
    print(f"  filled in {meta['fill_s']} s ({meta['insert_s']} s inserting, the rest indexing)", flush=True)
    return path, meta


# -- in process --------------------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"p50": round(statistics.median(ordered), 2), "p95": round(p95, 2), "n": len(ordered)}


def timed(call: Callable[[], object], reps: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000.0)
    return percentiles(samples)


def scenarios(store: SqlStore, meta: dict[str, Any]) -> dict[str, QueueQuery]:
    end = datetime.fromisoformat(meta["end"])
    intent = "card_payment_fee_charged"
    found = {
        "no filter": QueueQuery(),
        "intent": QueueQuery(intent=intent),
        "channel + confidence": QueueQuery(channel="chat", min_confidence=0.3, max_confidence=0.6),
        "last 24 h": QueueQuery(since=end - timedelta(hours=24)),
        "done": QueueQuery(state="done"),
        "intent matching nothing": QueueQuery(intent="no_such_intent"),
        "channel matching nothing": QueueQuery(channel="fax"),
    }
    first = store.queue_page("acme", QueueQuery(), limit=PAGE)
    assert first.next_cursor is not None
    found["page 2 (cursor)"] = QueueQuery(after=first.next_cursor)
    cursor, page = first.next_cursor, 2
    while page < DEEP_PAGE:
        following = store.queue_page("acme", QueueQuery(after=cursor), limit=PAGE).next_cursor
        if following is None:
            break
        cursor, page = following, page + 1
    found[f"page {page} (cursor)"] = QueueQuery(after=cursor)
    return found


def plan_of(path: Path, query: QueueQuery) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        compiled = page_statement("acme", query, PAGE).compile(conn)
        params = compiled.construct_params()
        processors = compiled._bind_processors
        values = tuple(
            processors[k](params[k]) if k in processors else params[k] for k in compiled.positiontup or ()
        )
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), values).all()
    engine.dispose()
    return rows[0][3] + ("; TEMP B-TREE" if any("TEMP B-TREE" in r[3] for r in rows) else "")


def in_process(path: Path, meta: dict[str, Any], reps: int, tickets: list[str]) -> dict[str, Any]:
    url = f"sqlite:///{path}"
    store, knowledge = SqlStore(url), SqlKnowledgeStore(url)
    results: dict[str, Any] = {}
    try:
        for name, query in scenarios(store, meta).items():
            page = store.queue_page("acme", query, limit=PAGE)
            count = store.queue_count("acme", query)

            def both(q: QueueQuery = query) -> None:
                store.queue_page("acme", q, limit=PAGE)
                store.queue_count("acme", q)

            results[f"queue: {name}"] = {
                **timed(both, reps),
                "page": timed(lambda q=query: store.queue_page("acme", q, limit=PAGE), reps)["p95"],
                "rows": len(page.rows),
                "count": count,
                "plan": plan_of(path, query),
            }
            print(f"  {name}: {results[f'queue: {name}']}", flush=True)
        picks = iter(tickets * (reps // len(tickets) + 2))

        def ticket() -> None:
            request_id = next(picks)
            assert store.get_decision("acme", request_id) is not None
            store.verdict("acme", request_id)
            knowledge.latest_suggestion("acme", request_id)

        results["ticket reads"] = timed(ticket, reps)
        print(f"  ticket reads: {results['ticket reads']}", flush=True)
    finally:
        store.close()
        knowledge.close()
    return results


def without_partial_indexes(path: Path) -> Path:
    copy = path.with_name("console-noindex.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    shutil.copyfile(path, copy)
    con = sqlite3.connect(copy)
    for name in PARTIAL:
        con.execute(f'DROP INDEX "{name}"')
    con.commit()
    con.close()
    return copy


def sample_tickets(path: Path, k: int, seed: int) -> list[str]:
    con = sqlite3.connect(path)
    ids = [
        r[0]
        for r in con.execute(
            "SELECT request_id FROM decisions WHERE tenant = 'acme' AND (route = 'human' OR review_sample) "
            "AND id % 97 = 0 LIMIT 5000"
        )
    ]
    con.close()
    rng = np.random.default_rng(seed)
    return [ids[int(i)] for i in rng.integers(0, len(ids), k)]


# -- over HTTP ---------------------------------------------------------------------------------------------


def deskpilot(home: Path, *args: str) -> str:
    env = os.environ | {"DESKPILOT_HOME": str(home)}
    done = subprocess.run(
        [str(BIN / "deskpilot"), *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"deskpilot {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def prepare_home(home: Path) -> str:
    """A home with a tfidf champion trained on Banking77 (reused when present) and an agent's key."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "mlflow.db").exists():
        print("training the tfidf champion on Banking77 ...", flush=True)
        started = time.perf_counter()
        trained = json.loads(
            deskpilot(
                home, "train", "--data", str(DATA), "--label-column", "category", "--model", "tfidf", "--json"
            )
        )
        name, version = trained["uri"].removeprefix("models:/").split("/")
        _registry(home).set_alias(name, "champion", version)
        print(f"  {trained['uri']} in {time.perf_counter() - started:.0f} s", flush=True)
    made = json.loads(deskpilot(home, "keys", "create", "--tenant", "acme", "--role", "agent", "--json"))
    return str(made["key"])


def _registry(home: Path) -> Any:
    from deskpilot.registry.mlflow_registry import MlflowRegistry

    return MlflowRegistry(
        f"sqlite:///{(home / 'mlflow.db').resolve()}",
        artifact_root=home / "mlartifacts",
        cache_dir=home / "cache" / "models",
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def over_http(path: Path, meta: dict[str, Any], reps: int, tickets: list[str]) -> dict[str, Any]:
    home = CACHE / "home"
    key = prepare_home(home)
    port = free_port()
    env = os.environ | {
        "DESKPILOT_HOME": str(home),
        "DESKPILOT_DATABASE_URL": f"sqlite:///{path}",
        "DESKPILOT_RATE_LIMIT_PER_S": "0",
        "HF_HUB_OFFLINE": "1",
    }
    log = (CACHE / "serve.log").open("wb")
    cmd = [str(BIN / "deskpilot"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    try:
        client = httpx.Client(base_url=base, timeout=30.0)
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"deskpilot serve exited: see {CACHE / 'serve.log'}")
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("deskpilot serve was not ready in 180 s")
            time.sleep(0.2)
        form = client.get("/console/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        signed = client.post("/console/sign-in", data={"csrf_token": token.group(1), "key": key})
        assert signed.status_code == 303, signed.text[:500]
        end = datetime.fromisoformat(meta["end"])
        hours = math.ceil((datetime.now(UTC) - end).total_seconds() / 3600) + 24
        first = client.get("/console/queue")
        following = re.search(r'<a href="([^"]+)" rel="next">', first.text)
        assert following is not None
        pages = {
            "queue: no filter": "/console/queue",
            "queue: intent": "/console/queue?intent=card_payment_fee_charged",
            "queue: channel + confidence": "/console/queue?channel=chat&min_conf=30&max_conf=60",
            f"queue: last 24 h (age={hours}h)": f"/console/queue?age={hours}h",
            "queue: done": "/console/queue?state=done",
            "queue: channel matching nothing": "/console/queue?channel=fax",
            "queue: page 2 (cursor)": following.group(1).replace("&amp;", "&"),
            "queue: live rows fragment": "/console/queue/rows",
        }
        for name, target in pages.items():
            results[name] = _http_timed(client, lambda t=target: t, reps)
            print(f"  {name}: {results[name]}", flush=True)
        picks = iter(tickets * (reps // len(tickets) + 2))
        results["ticket page"] = _http_timed(client, lambda: f"/console/tickets/{next(picks)}", reps)
        print(f"  ticket page: {results['ticket page']}", flush=True)
        client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return results


def _http_timed(client: httpx.Client, target: Callable[[], str], reps: int) -> dict[str, Any]:
    for _ in range(3):
        assert client.get(target()).status_code == 200
    wall, app = [], []
    for _ in range(reps):
        started = time.perf_counter()
        answer = client.get(target())
        wall.append((time.perf_counter() - started) * 1000.0)
        assert answer.status_code == 200, answer.status_code
        found = re.search(r"app;dur=([0-9.]+)", answer.headers.get("server-timing", ""))
        if found:
            app.append(float(found.group(1)))
    return {
        "client": percentiles(wall),
        "app": percentiles(app) if app else None,
        "bytes": len(answer.content),
    }


# -- report ------------------------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> None:
    indexed, baseline, http = results["indexed"], results["baseline"], results.get("http", {})
    print("\nIn process (SqlStore on SQLite, tenant acme), page + capped count, ms:")
    head = f"{'p50':>8} {'p95':>8} {'target':>7} {'p95/tgt':>8} {'no-ix p95':>10} {'no-ix/ix':>9}  plan"
    print(f"{'scenario':30} {head}")
    for name, row in indexed.items():
        target = TICKET_TARGET_MS if name.startswith("ticket") else QUEUE_TARGET_MS
        base = baseline.get(name, {})
        ratio = base.get("p95", float("nan")) / row["p95"] if row["p95"] else float("nan")
        print(
            f"{name:30} {row['p50']:8.2f} {row['p95']:8.2f} {target:7.0f} {row['p95'] / target:8.3f} "
            f"{base.get('p95', float('nan')):10.2f} {ratio:9.1f}  {row.get('plan', '')}"
        )
    if http:
        print("\nOver HTTP (deskpilot serve, 1 worker; client on 127.0.0.1, keep-alive), ms:")
        print(
            f"{'page':40} {'client p50':>10} {'client p95':>10} {'app p95':>8} {'target':>7} {'p95/tgt':>8}"
        )
        for name, row in http.items():
            target = TICKET_TARGET_MS if name.startswith("ticket") else QUEUE_TARGET_MS
            app = row["app"]["p95"] if row["app"] else float("nan")
            client = row["client"]
            print(
                f"{name:40} {client['p50']:10.2f} {client['p95']:10.2f} {app:8.2f} {target:7.0f} "
                f"{client['p95'] / target:8.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--http-reps", type=int, default=60)
    parser.add_argument("--baseline-reps", type=int, default=30, help="reps without the partial indexes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="fill the database again")
    parser.add_argument("--no-http", action="store_true", help="skip the live server")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    path, meta = database(args.decisions, args.seed, args.fresh)
    tickets = sample_tickets(path, 200, args.seed)
    results: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "sqlite": sqlite3.sqlite_version,
        "data": meta,
    }
    print("with the partial indexes:", flush=True)
    results["indexed"] = in_process(path, meta, args.reps, tickets)
    print("without them (baseline):", flush=True)
    copy = without_partial_indexes(path)
    try:
        results["baseline"] = in_process(copy, meta, args.baseline_reps, tickets)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)
    if not args.no_http:
        print("over HTTP:", flush=True)
        results["http"] = over_http(path, meta, args.http_reps, tickets)
    results["total_s"] = round(time.perf_counter() - started, 1)
    report(results)
    print(f"\nmachine: {results['machine']}; SQLite {results['sqlite']}; total {results['total_s']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
