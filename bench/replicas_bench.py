"""Two `deskpilot serve` replicas behind nginx vs one, store on PostgreSQL, tfidf, measured in one run.

The topology of compose.yaml on one host: each replica is a ``deskpilot serve --workers 1``, both on one
DESKPILOT_HOME (compose's shared ``deskpilot-home`` volume: the keys file, made by ``deskpilot keys
create``, the ledger, the index), one PostgreSQL store (a fresh database, migrated, dropped afterwards),
one registry (the trainer's MLflow SQLite file through DESKPILOT_TRACKING_URI; compose uses an MLflow
server, which only adds the poll of a registry change every few seconds). The proxy is nginx with
deploy/compose/nginx.conf, changed only where one host requires it (printed at start): the upstream
servers are 127.0.0.1 ports (no Docker DNS, so no ``resolver`` and no ``resolve``, which nginx < 1.27.3
lacks), it listens on a free local port, and its temp paths are in the bench's folder. Its
per-client-address limits (``limit_conn 64``, ``limit_req 400r/s burst 800``) would throttle this bench,
whose every request comes from 127.0.0.1, so ``--proxy-limits off`` (the default) drops those two lines;
``compose`` keeps them and counts the 429s.

Configurations, alternated within each round (--rounds rotates the order), all against the same two warm
replica processes (replica 2 idles while only replica 1 is loaded):

* ``1 direct``: wrk → replica 1;
* ``1 via nginx``: wrk → nginx → replica 1 (the proxy's own cost);
* ``2 via nginx``: wrk → nginx → replicas 1 and 2.

``wrk`` (one thread, one keep-alive connection per user, --concurrency users, --warmup s discarded, then
--duration s measured) loads ``POST /v1/triage``. Over the measured window the bench reads the CPU seconds
of every party (user + system): wrk (its rusage), the nginx master and workers, each replica's process tree,
the PostgreSQL server processes, and the whole machine's busy time (psutil.cpu_times), so the 2 cores are
accounted for: what the load generator, proxy, replicas and database each used, and what was left idle.
The throughput ratio is printed plainly and also per core left to the service (req/s ÷ (cores − wrk's
cores)), since the generator competes for the same two cores.

    .venv/bin/python bench/replicas_bench.py [--concurrency 64] [--duration 10] [--warmup 3] [--rounds 2]
        [--database-url URL] [--proxy-limits off|compose] [--home DIR] [--json OUT]

``--database-url`` (default DESKPILOT_TEST_DATABASE_URL) names an existing database whose role may CREATE
DATABASE; the bench's database is created beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_bench import (
    BIN,
    HOST,
    NAME,
    Server,
    ServerSpec,
    check_answer,
    deskpilot,
    deskpilot_metrics,
    environment,
    free_port,
    http_get,
    prepare,
    run_wrk,
    set_champion,
    start_server,
    texts_sample,
    write_wrk_files,
)

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "compose" / "nginx.conf"
TENANT = "bench"


# ------------------------------------------------------------------------------------------------ setup


@contextlib.contextmanager
def fresh_database(base: str) -> Iterator[str]:
    """An empty database beside ``base`` (its role needs CREATEDB), dropped afterwards."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    url = sa.make_url(base)
    name = f"{url.database}_replicas_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def nginx_conf(work: Path, port: int, upstreams: list[int], limits: str) -> tuple[str, list[str]]:
    """deploy/compose/nginx.conf with the changes one host needs; returns the text and what changed."""
    text = NGINX_CONF.read_text()
    changes = []
    servers = "\n".join(f"        server {HOST}:{p} max_fails=3 fail_timeout=10s;" for p in upstreams)
    text, n = re.subn(r"(?m)^\s*server api-1:8000[^\n]*\n\s*server api-2:8000[^\n]*$", servers, text)
    assert n == 1, "the upstream block of nginx.conf changed"
    changes.append(
        f"upstream servers api-1/api-2:8000 resolve -> {', '.join(f'{HOST}:{p}' for p in upstreams)}"
    )
    text, n = re.subn(r"(?m)^\s*resolver [^\n]*\n", "", text)
    assert n == 1
    changes.append("resolver 127.0.0.11 (Docker DNS) removed")
    text, n = re.subn(r"listen 8080;", f"listen {HOST}:{port};", text)
    assert n == 1
    changes.append(f"listen 8080 -> {HOST}:{port}")
    temp = "\n".join(
        f"    {kind}_temp_path {work / ('tmp-' + kind)};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp + "\n", 1)
    changes.append("temp paths in the bench folder")
    if limits == "off":
        text, n = re.subn(r"(?m)^\s*limit_(conn per_client_conn|req zone=per_client_req)[^\n]*\n", "", text)
        assert n == 2
        changes.append("per-address limit_conn/limit_req dropped (all load comes from 127.0.0.1)")
    return text, changes


@dataclass
class Nginx:
    proc: subprocess.Popen[bytes]
    port: int

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGQUIT)  # graceful; our own session
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_nginx(work: Path, upstreams: list[int], limits: str, label: str) -> tuple[Nginx, list[str]]:
    port = free_port()
    folder = work / f"nginx-{label}"
    folder.mkdir()
    text, changes = nginx_conf(folder, port, upstreams, limits)
    conf = folder / "nginx.conf"
    conf.write_text(text)
    cmd = ["nginx", "-p", str(folder), "-c", str(conf), "-g", f"daemon off; pid {folder / 'nginx.pid'};"]
    check = subprocess.run([*cmd[:5], "-t"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise SystemExit(f"nginx -t failed:\n{check.stderr}")
    out = (folder / "nginx.out").open("wb")  # access log (/dev/stdout) and errors
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if http_get(port, "/readyz", timeout=1)[0] == 200:
                return Nginx(proc, port), changes
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nginx did not answer:\n{(folder / 'nginx.out').read_text()[-2000:]}")


# ---------------------------------------------------------------------------------------------- measure


def proc_cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def postgres_procs() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["name"]):
        if (p.info["name"] or "").startswith("postgres"):
            found.append(p)
    return found


def machine_busy() -> tuple[float, float]:
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0), idle


def measure(
    label: str, target: Server, replicas: list[Server], nginx: Nginx | None, ctx: dict[str, Any]
) -> dict[str, Any]:
    args = ctx["args"]
    bodies, lua = ctx["files"]
    run_wrk(target, bodies, lua, args.concurrency, args.warmup)
    parties = {
        "nginx": nginx.tree() if nginx else [],
        **{f"replica {i + 1}": r.tree() for i, r in enumerate(replicas)},
        "postgres": postgres_procs(),
    }
    before_metrics = [deskpilot_metrics(r.port) for r in replicas]
    load0 = os.getloadavg()[0]
    cpu0 = {k: proc_cpu(v) for k, v in parties.items()}
    busy0, idle0 = machine_busy()
    load = run_wrk(target, bodies, lua, args.concurrency, args.duration)
    busy1, idle1 = machine_busy()
    cores = {k: (proc_cpu(v) - cpu0[k]) / load.seconds for k, v in parties.items()}
    cores["wrk"] = load.client_cpu_s / load.seconds
    busy = (busy1 - busy0) / load.seconds
    cores["other"] = max(0.0, busy - sum(cores.values()))
    cores["idle"] = (idle1 - idle0) / load.seconds
    after_metrics = [deskpilot_metrics(r.port) for r in replicas]
    dropped = sum(
        a["deskpilot_store_dropped_total"] - b["deskpilot_store_dropped_total"]
        for a, b in zip(after_metrics, before_metrics, strict=True)
    )
    served = [
        a["deskpilot_batch_size_sum"] - b["deskpilot_batch_size_sum"]
        for a, b in zip(after_metrics, before_metrics, strict=True)
    ]
    req_s = load.requests / load.seconds
    service_cores = sum(cores[k] for k in parties)
    row = {
        "config": label,
        "req_s": req_s,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
        "errors": load.errors,
        "requests": load.requests,
        "cores": cores,
        "service_cores": service_cores,
        "req_per_service_core_s": req_s / service_cores if service_cores else float("nan"),
        "req_s_per_core_left": req_s / max(1e-9, (os.cpu_count() or 2) - cores["wrk"]),
        "texts_per_replica": served,
        "store_dropped": dropped,
        "load_avg": f"{load0:.2f}->{os.getloadavg()[0]:.2f}",
    }
    share = "  ".join(f"{k} {v:.2f}" for k, v in cores.items())
    print(
        f"  {label:<12} {req_s:7.0f} req/s  p50 {load.p50_ms:6.1f}  p99 {load.p99_ms:6.1f} ms"
        f"  err {load.errors}"
        f"  texts per replica {'/'.join(f'{s:.0f}' for s in served)}  store dropped {dropped:.0f}"
        f"  load {row['load_avg']}\n      cores: {share}",
        flush=True,
    )
    return row


# ------------------------------------------------------------------------------------------------ main


def main() -> None:  # noqa: PLR0915
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", default=os.environ.get("DESKPILOT_TEST_DATABASE_URL"))
    parser.add_argument("--proxy-limits", choices=["off", "compose"], default="off")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--home", type=Path, help="trainer's DESKPILOT_HOME to create or reuse")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("needs --database-url or DESKPILOT_TEST_DATABASE_URL (PostgreSQL)")
    if shutil.which("nginx") is None or shutil.which("wrk") is None:
        raise SystemExit("needs nginx and wrk on PATH (Debian: apt-get install nginx wrk)")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    version_out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip()

    temp = tempfile.TemporaryDirectory(prefix="replicas_bench_")
    work = Path(temp.name)
    (work / "logs").mkdir()
    home = args.home.resolve() if args.home else work / "trainer"
    version = prepare(home, ["tfidf"])["tfidf"]
    set_champion(home, version)
    texts = texts_sample(args.texts)
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        store_url = stack.enter_context(fresh_database(args.database_url))
        common = {
            "DESKPILOT_DATABASE_URL": store_url,
            "DESKPILOT_TRACKING_URI": f"sqlite:///{(home / 'mlflow.db').resolve()}",
        }
        shared = work / "replicas-home"  # one home for both, as compose.yaml's deskpilot-home volume
        shared.mkdir()
        with environment(common):
            deskpilot(shared, "store", "migrate")
            key = json.loads(
                deskpilot(shared, "keys", "create", "--tenant", TENANT, "--label", "replicas", "--json")
            )["key"]
            replicas = []
            for n in (1, 2):
                spec = ServerSpec(f"replica {n}", "deskpilot")
                server = start_server(spec, shared, version, key, work / "logs")
                stack.callback(server.stop)
                replicas.append(server)
        for server in replicas:
            check_answer(server, texts[0])
        one, changes = start_nginx(work, [replicas[0].port], args.proxy_limits, "one")
        stack.callback(one.stop)
        two, _ = start_nginx(work, [r.port for r in replicas], args.proxy_limits, "two")
        stack.callback(two.stop)
        ctx = {"args": args, "files": write_wrk_files(work, texts)["deskpilot"]}
        print(
            f"{version_out}; deploy/compose/nginx.conf with: {'; '.join(changes)}\n"
            f"tfidf models:/{NAME}/{version}; store PostgreSQL (fresh database); wrk c={args.concurrency}, "
            f"{args.duration:g} s measured after {args.warmup:g} s warm-up; {os.cpu_count()} CPUs; "
            f"replica RSS {', '.join(f'{r.memory_mb()[0]:.0f}' for r in replicas)} MB; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            flush=True,
        )

        def via(nginx: Nginx) -> Server:
            return Server(replicas[0].spec, nginx.port, nginx.proc, work / "x", path="/v1/triage",
                          headers=replicas[0].headers)  # fmt: skip

        configs: list[tuple[str, Server, Nginx | None]] = [
            ("1 direct", replicas[0], None),
            ("1 via nginx", via(one), one),
            ("2 via nginx", via(two), two),
        ]
        for rnd in range(args.rounds):
            shift = rnd % len(configs)
            print(f"round {rnd + 1}", flush=True)
            for label, target, nginx in configs[shift:] + configs[:shift]:
                rows.append(measure(label, target, replicas, nginx, ctx) | {"round": rnd + 1})
    summary = report(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2, default=str))
    temp.cleanup()


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    labels = ["1 direct", "1 via nginx", "2 via nginx"]
    med: dict[str, dict[str, Any]] = {}
    parties = ["wrk", "nginx", "replica 1", "replica 2", "postgres", "other", "idle"]
    for label in labels:
        group = [r for r in rows if r["config"] == label]
        med[label] = {
            "req_s": statistics.median(r["req_s"] for r in group),
            "p50_ms": statistics.median(r["p50_ms"] for r in group),
            "p99_ms": statistics.median(r["p99_ms"] for r in group),
            "errors": sum(r["errors"] for r in group),
            "per_core_left": statistics.median(r["req_s_per_core_left"] for r in group),
            "per_service_core": statistics.median(r["req_per_service_core_s"] for r in group),
            "cores": {p: statistics.median(r["cores"].get(p, 0.0) for r in group) for p in parties},
            "rounds": len(group),
        }
    print(f"\n=== medians over {med[labels[0]]['rounds']} round(s) ===")
    head = "| config | req/s | p50 ms | p99 ms | errors | req/s per core left after wrk"
    head += " | req per service CPU-s |"
    print(head + " " + " | ".join(f"{p} cores" for p in parties) + " |")
    print("|---" + "|---:" * (6 + len(parties)) + "|")
    for label in labels:
        m = med[label]
        cells = [f"{m['req_s']:,.0f}", f"{m['p50_ms']:.1f}", f"{m['p99_ms']:.1f}", str(m["errors"])]
        cells += [f"{m['per_core_left']:,.0f}", f"{m['per_service_core']:,.0f}"]
        cells += [f"{m['cores'][p]:.2f}" for p in parties]
        print(f"| {label} | " + " | ".join(cells) + " |")
    two, one, direct = med["2 via nginx"], med["1 via nginx"], med["1 direct"]
    ratios = {
        "two_vs_one_direct": two["req_s"] / direct["req_s"],
        "two_vs_one_via_nginx": two["req_s"] / one["req_s"],
        "two_vs_one_direct_per_core_left": two["per_core_left"] / direct["per_core_left"],
    }
    print(
        f"throughput 2 replicas / 1 (direct) = {ratios['two_vs_one_direct']:.2f}x,"
        f" / 1 behind the same nginx = {ratios['two_vs_one_via_nginx']:.2f}x; per core left after wrk: "
        f"{ratios['two_vs_one_direct_per_core_left']:.2f}x; p99 {two['p99_ms']:.1f} ms"
        f" vs {direct['p99_ms']:.1f}"
        f" (direct) / {one['p99_ms']:.1f} ms (1 via nginx)"
    )
    print(f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return {"medians": med, "ratios": ratios}


if __name__ == "__main__":
    main()
