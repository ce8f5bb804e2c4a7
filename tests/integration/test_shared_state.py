"""Many replicas, shared state, with real processes: one ``mlflow server`` (PostgreSQL backend, artifacts
served from a folder), one PostgreSQL store, two ``deskpilot serve`` processes with the same settings.

A promotion made through the tracking server reaches both replicas within their reload interval; a canary
that breaks the policy on both replicas is rolled back once (one guard wins, the other sees the state moved);
every replica's decisions land in the one store.

Needs PostgreSQL (``DESKPILOT_TEST_DATABASE_URL``, a role with CREATEDB): skipped without it, unless
``DESKPILOT_REQUIRE_POSTGRES=1`` makes that a failure. ``DESKPILOT_BENCH_OUT`` (a folder) receives the
measured promotion-propagation times as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deskpilot.config import Settings
from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import Snapshot, SnapshotStore
from deskpilot.registry.mlflow_registry import MlflowRegistry
from deskpilot.rollout.actions import read_state
from deskpilot.store import migrate
from deskpilot.store.audit_sql import SqlAuditLog
from deskpilot.store.sql import SqlStore
from deskpilot.training.pipeline import train_and_register
from deskpilot.training.run import TrainingConfig
from deskpilot.workflows import rollout as rollout_flow
from tests.helpers import DESKPILOT, REPO_ROOT, NoRedaction, bundled_subset, fresh_database
from tests.integration.api_fixtures import ACME_KEY, MODEL
from tests.live_server import free_port

pytestmark = pytest.mark.slow

AUDIT_KEY = "5e" * 32  # every replica and the operator sign the one audit chain with the same key
RELOAD_INTERVAL_S = 0.25
GUARD_INTERVAL_S = 0.2
# Deterministic breach: any challenger call takes more than 0 ms, so once a replica has seen min_requests
# challenger calls its guard must roll back. Nothing else can fire (errors, disagreement and feedback are
# out of reach), and without traffic nothing fires at all.
POLICY = """\
version: 1
rollout:
  window_s: 120
  min_requests: 5
  max_error_rate: 1.0
  max_p99_ms: 0
  max_disagreement: 1.0
"""
MLFLOW = Path(sys.executable).with_name("mlflow")
TEXTS = bundled_subset(labels=6, per_label=30, seed=5)["text"].tolist()


@dataclass(frozen=True)
class Replica:
    name: str
    url: str
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ACME_KEY}"}, timeout=30.0)

    def serving(self) -> dict[str, Any]:
        with self.client() as client:
            response = client.get("/v1/models")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@dataclass(frozen=True)
class Cluster:
    tracking_uri: str
    store_url: str
    replicas: tuple[Replica, ...]
    registry: MlflowRegistry
    versions: tuple[str, ...]
    operator: Settings  # what an operator's CLI on another machine would have


def clean_env(**values: str) -> dict[str, str]:
    """This environment without any DeskPilot setting of the caller's, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKPILOT_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    return env | values


@contextmanager
def process_group(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own (the MLflow server starts children), stopped with its group."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            args, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, start_new_session=True
        )
        try:
            yield process
        finally:
            for stop, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(process.pid, stop)
                except ProcessLookupError:
                    break
                try:
                    process.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue


def wait_until(
    what: str,
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    alive: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {alive.returncode}")
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_s:.0f} s")
        time.sleep(0.05)


def snapshot(home: Path) -> Snapshot:
    data = home / "tickets.csv"
    bundled_subset(labels=6, per_label=30).to_csv(data, index=False)
    table = read_table(data)
    return SnapshotStore(home / "snapshots").create(
        table, validate_table(table, DataContract()), NoRedaction()
    )


def serve_env(home: Path, tracking_uri: str, store_url: str, policy: Path) -> dict[str, str]:
    return clean_env(
        DESKPILOT_HOME=str(home),
        DESKPILOT_TRACKING_URI=tracking_uri,
        DESKPILOT_DATABASE_URL=store_url,
        DESKPILOT_MODEL_NAME=MODEL,
        DESKPILOT_API_KEYS=f"acme:{ACME_KEY}",
        DESKPILOT_AUDIT_KEY=AUDIT_KEY,
        DESKPILOT_POLICY_FILE=str(policy),
        DESKPILOT_RELOAD_INTERVAL_S=str(RELOAD_INTERVAL_S),
        DESKPILOT_GUARD_INTERVAL_S=str(GUARD_INTERVAL_S),
        DESKPILOT_KB_RELOAD_INTERVAL_S="0",
        DESKPILOT_RATE_LIMIT_PER_S="0",
        DESKPILOT_MODEL_TIMEOUT_S="10",
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = os.environ.get("DESKPILOT_TEST_DATABASE_URL")
    if not base:
        if os.environ.get("DESKPILOT_REQUIRE_POSTGRES"):
            pytest.fail("DESKPILOT_REQUIRE_POSTGRES is set but DESKPILOT_TEST_DATABASE_URL is not")
        pytest.skip("no PostgreSQL: DESKPILOT_TEST_DATABASE_URL is not set")
    import mlflow

    root = tmp_path_factory.mktemp("shared")
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    with ExitStack() as stack:
        backend = stack.enter_context(fresh_database(base, "shared_"))
        store_url = stack.enter_context(fresh_database(base, "shared_"))
        port = free_port()
        tracking_uri = f"http://127.0.0.1:{port}"
        server_args = [
            str(MLFLOW), "server",
            "--backend-store-uri", backend,
            "--serve-artifacts",
            "--artifacts-destination", str(root / "artifacts"),
            "--default-artifact-root", "mlflow-artifacts:/",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ]  # fmt: skip
        server = stack.enter_context(
            process_group(
                server_args, root / "mlflow.log", clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
            )
        )
        stack.callback(mlflow.set_registry_uri, before[1])  # the registry sets MLflow's global URIs
        stack.callback(mlflow.set_tracking_uri, before[0])
        # while the server starts: the store's schema and the training data
        migrate.upgrade(store_url)
        operator_home = root / "operator"
        operator_home.mkdir()
        data = snapshot(operator_home)
        policy = root / "policy.yaml"
        policy.write_text(POLICY)
        wait_until(
            "the MLflow server's /health",
            lambda: httpx.get(f"{tracking_uri}/health", timeout=2).status_code == 200,
            timeout_s=240,
            alive=server,
        )
        # artifact_root is for a local store only: with a server the artifacts must go through it
        registry = MlflowRegistry(
            tracking_uri, artifact_root=operator_home / "mlartifacts", cache_dir=operator_home / "cache"
        )

        def train(seed: int) -> str:
            run = train_and_register(data, TrainingConfig(family="tfidf", seed=seed), registry, name=MODEL)
            return run.version.version

        v1 = train(0)  # the first version that passes its gate is the champion
        replicas = []
        processes = []
        for name in ("replica-a", "replica-b"):
            home = root / name
            home.mkdir()
            replica_port = free_port()
            log = root / f"{name}.log"
            args = [str(DESKPILOT), "serve", "--host", "127.0.0.1", "--port", str(replica_port)]
            env = serve_env(home, tracking_uri, store_url, policy)
            processes.append(stack.enter_context(process_group(args, log, env)))
            replicas.append(Replica(name, f"http://127.0.0.1:{replica_port}", log))
        v2 = train(1)  # while the replicas start
        for replica, process in zip(replicas, processes, strict=True):
            wait_until(
                f"{replica.name} ready",
                lambda r=replica: httpx.get(f"{r.url}/readyz", timeout=5).status_code == 200,
                timeout_s=180,
                alive=process,
            )
        operator = Settings(
            home=operator_home,
            tracking_uri=tracking_uri,
            database_url=store_url,
            audit_key=[AUDIT_KEY],
            model_name=MODEL,
            policy_file=policy,
        )
        yield Cluster(tracking_uri, store_url, tuple(replicas), registry, (v1, v2), operator)


def rollbacks_counted(replica: Replica) -> float:
    with replica.client() as client:
        text = client.get("/metrics").text
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("deskpilot_rollbacks_total{")
    )


def conflicts(replica: Replica) -> list[str]:
    """Why this replica's guard found its rollback already made (from its JSON log lines)."""
    found = []
    for line in replica.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and "rollout changed meanwhile" in line:
            found.append(str(json.loads(line).get("detail", "")))
    return found


def record_propagation(times: dict[str, float]) -> None:
    result = {
        "what": "promotion to canary: from the promote call returning to GET /v1/models reporting it",
        "reload_interval_s": RELOAD_INTERVAL_S,
        "replicas_s": {name: round(took, 3) for name, took in times.items()},
        "max_s": round(max(times.values()), 3),
    }
    print(f"\npromotion propagation: {json.dumps(result)}")
    out = os.environ.get("DESKPILOT_BENCH_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "shared_state_propagation.json").write_text(json.dumps(result, indent=2) + "\n")


def test_the_tracking_server_holds_the_models_and_serves_their_artifacts(cluster: Cluster) -> None:
    experiment = cluster.registry._client().get_experiment_by_name("deskpilot")
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    assert not (cluster.operator.home / "mlartifacts").exists(), "artifacts must not stay on one host"
    versions = {v.version: v for v in cluster.registry.versions(MODEL)}
    assert set(versions) == set(cluster.versions)
    assert cluster.registry.alias_version(MODEL, "champion") == cluster.versions[0]


def test_a_promotion_reaches_every_replica_and_a_breach_rolls_back_once(cluster: Cluster) -> None:
    v1, v2 = cluster.versions
    for replica in cluster.replicas:
        serving = replica.serving()
        assert serving["champion"]["version"] == v1, (replica.name, serving)
        assert serving["challenger"] is None, (replica.name, serving)

    # (1) one promotion, made through the tracking server, reaches every replica
    rollout_flow.promote(
        cluster.operator, f"models:/{MODEL}/{v2}", to="canary", percent=50, reason="shared-state test"
    )
    promoted_at = time.monotonic()
    times: dict[str, float] = {}

    def follow(replica: Replica) -> None:
        def reports_it() -> bool:
            challenger = replica.serving()["challenger"]
            return challenger is not None and challenger["version"] == v2

        wait_until(f"{replica.name} serving the canary", reports_it, timeout_s=60)
        times[replica.name] = time.monotonic() - promoted_at

    watchers = [threading.Thread(target=follow, args=(r,)) for r in cluster.replicas]
    for watcher in watchers:
        watcher.start()
    for watcher in watchers:
        watcher.join()
    assert set(times) == {r.name for r in cluster.replicas}, "a replica never reported the canary"
    record_propagation(times)
    assert max(times.values()) < 15, times

    # (2) the canary breaks the latency rule on both replicas at once; one rollback, one audit entry
    start = threading.Barrier(len(cluster.replicas))
    statuses: dict[str, list[int]] = {}

    def traffic(replica: Replica) -> None:
        got = statuses.setdefault(replica.name, [])
        with replica.client() as client:
            start.wait(timeout=30)
            for i, text in enumerate(TEXTS[:40]):
                body = {"text": text, "id": f"{replica.name}-breach-{i}"}
                got.append(client.post("/v1/triage", json=body).status_code)

    senders = [threading.Thread(target=traffic, args=(r,)) for r in cluster.replicas]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert {name: set(codes) for name, codes in statuses.items()} == {r.name: {200} for r in cluster.replicas}
    wait_until(
        "the registry back at the champion alone",
        lambda: read_state(cluster.registry, MODEL).challenger is None,
        timeout_s=60,
    )
    for replica in cluster.replicas:
        wait_until(
            f"{replica.name} without the canary",
            lambda r=replica: r.serving()["challenger"] is None,
            timeout_s=30,
        )
    time.sleep(10 * GUARD_INTERVAL_S)  # a losing guard's attempt in flight has finished by now

    state = read_state(cluster.registry, MODEL)
    assert (state.champion, state.challenger, str(state.stage)) == (v1, None, "none")
    assert cluster.registry.alias_version(MODEL, "champion") == v1
    log = SqlAuditLog(cluster.store_url)
    try:
        entries = log.entries()
    finally:
        log.close()
    automatic = [e for e in entries if e.action == "auto_rollback"]
    assert [(e.actor, e.target) for e in automatic] == [("deskpilot-service", f"models:/{MODEL}/{v2}")]
    assert "p99_latency" in automatic[0].reason
    assert [e.action for e in entries] == ["promote", "auto_rollback"]
    counted = {r.name: rollbacks_counted(r) for r in cluster.replicas}
    assert sorted(bool(n) for n in counted.values()) == [False, True], counted  # the loser counts nothing
    winner = next(name for name, n in counted.items() if n)
    seen = {r.name: conflicts(r) for r in cluster.replicas}
    print(f"rolled back by {winner}; the guards' conflicts: {seen}")


def test_decisions_from_every_replica_land_in_the_one_store(cluster: Cluster) -> None:
    sent: dict[str, list[str]] = {}
    for replica in cluster.replicas:
        with replica.client() as client:
            for i, text in enumerate(TEXTS[40:45]):
                answer = client.post("/v1/triage", json={"text": text, "id": f"{replica.name}-{i}"})
                assert answer.status_code == 200, answer.text
                sent.setdefault(replica.name, []).append(answer.json()["request_id"])
    store = SqlStore(cluster.store_url)
    try:

        def missing() -> dict[str, list[str]]:
            return {
                name: [rid for rid in ids if store.get_decision("acme", rid) is None]
                for name, ids in sent.items()
            }

        wait_until("every decision in the store", lambda: not any(missing().values()), timeout_s=60)
        tickets = {
            name: sorted(str(getattr(store.get_decision("acme", rid), "ticket_id", None)) for rid in ids)
            for name, ids in sent.items()
        }
    finally:
        store.close()
    assert tickets == {r.name: [f"{r.name}-{i}" for i in range(5)] for r in cluster.replicas}


def test_claims_are_write_once_on_the_tracking_server(cluster: Cluster) -> None:
    """The registry primitive the exactly-once rollback rests on, raced by separate clients."""
    key = f"deskpilot.test_claim.{uuid.uuid4().hex[:8]}"
    clients = [MlflowRegistry(cluster.tracking_uri) for _ in range(4)]
    start = threading.Barrier(len(clients))
    results: dict[int, str] = {}

    def race(i: int) -> None:
        start.wait(timeout=30)
        results[i] = clients[i].claim(MODEL, cluster.versions[0], key, f"owner-{i}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(clients)
    (winner,) = set(results.values())
    assert winner in {f"owner-{i}" for i in range(len(clients))}
    assert clients[0].claim(MODEL, cluster.versions[0], key, "late") == winner
