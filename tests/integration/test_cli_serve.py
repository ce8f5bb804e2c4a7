"""``deskpilot serve`` and ``deskpilot store migrate`` as a user runs them: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from deskpilot.service.metrics import MULTIPROC_ENV
from deskpilot.store import migrate
from deskpilot.store.sql import SqlStore
from tests.helpers import DESKPILOT, REPO_ROOT, run_cli
from tests.integration.api_fixtures import ACME_KEY, MODEL, TrainedHome, trained_home
from tests.live_server import free_port

TEXT = "my card still has not arrived, quokka-marimba"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("serve") / "home", versions=1)


@contextmanager
def serve_process(
    home: Path, logs: Path, *args: str, env_extra: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``deskpilot serve`` on a free port, with its state under ``home`` and its stderr in ``logs``."""
    port = free_port()
    env = {
        **os.environ,
        "DESKPILOT_HOME": str(home),
        "DESKPILOT_MODEL_NAME": MODEL,
        "DESKPILOT_API_KEYS": f"acme:{ACME_KEY}",
        **(env_extra or {}),
    }
    for name in ("DESKPILOT_DEBUG", "DESKPILOT_TRACKING_URI", "DESKPILOT_DATABASE_URL", MULTIPROC_ENV):
        env.pop(name, None)
    with logs.open("wb") as sink:
        process = subprocess.Popen(
            [str(DESKPILOT), "serve", "--port", str(port), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, f"serve exited early:\n{logs.read_text()[-3000:]}"
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"serve never became healthy:\n{logs.read_text()[-3000:]}"
                time.sleep(0.1)
            yield process, url
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def json_lines(logs: Path) -> list[dict[str, Any]]:
    """The structured log lines (libraries that print progress bars write other lines beside them)."""
    return [json.loads(line) for line in logs.read_text().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_answers_then_stops_cleanly_on_a_signal(
    trained: TrainedHome, tmp_path: Path, stop: signal.Signals
) -> None:
    logs = tmp_path / "serve.log"
    with serve_process(trained.home, logs) as (process, url):
        auth = {"Authorization": f"Bearer {ACME_KEY}"}
        answered = httpx.post(f"{url}/v1/triage", json={"text": TEXT}, headers=auth, timeout=30)
        refused = httpx.post(f"{url}/v1/triage", json={"text": TEXT}, timeout=30)
        ready = httpx.get(f"{url}/readyz", timeout=30)
        process.send_signal(stop)
        started = time.monotonic()
        code = process.wait(timeout=15)
        took = time.monotonic() - started
    assert answered.status_code == 200, answered.text
    assert answered.json()["model_version"] == trained.versions[0]
    assert refused.status_code == 401
    assert ready.status_code == 200, ready.text
    # uvicorn shuts down gracefully, then re-raises SIGTERM so that a supervisor sees why it stopped
    assert code in (0, -stop), logs.read_text()[-3000:]
    assert took < 12
    lines = json_lines(logs)
    events = [line["event"] for line in lines]
    assert "Application shutdown complete." in events
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    access = [
        line for line in lines if line["logger"] == "deskpilot.access" and line["route"] == "/v1/triage"
    ]
    assert {(line["tenant"], line["status"]) for line in access} == {("acme", 200), (None, 401)}
    assert all(line["request_id"] for line in access)
    written = logs.read_text()
    assert ACME_KEY not in written
    assert "quokka-marimba" not in written
    # the decision log was drained on the way out
    store = SqlStore(f"sqlite:///{trained.home / 'deskpilot.db'}")
    try:
        assert store.get_decision("acme", answered.json()["request_id"]) is not None
    finally:
        store.close()


def test_two_workers_share_the_port_the_metrics_and_the_store(trained: TrainedHome, tmp_path: Path) -> None:
    logs = tmp_path / "serve.log"
    scratch = tmp_path / "tmp"  # the parent's metrics folder goes here; it must be gone afterwards
    scratch.mkdir()
    sent = 24
    with serve_process(trained.home, logs, "--workers", "2", env_extra={"TMPDIR": str(scratch)}) as (
        process,
        url,
    ):
        auth = {"Authorization": f"Bearer {ACME_KEY}"}
        ids = []
        for _ in range(sent):  # a new connection each time, so the kernel hands them to either worker
            answer = httpx.post(f"{url}/v1/triage", json={"text": TEXT}, headers=auth, timeout=30)
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["request_id"])
        assert len(list(scratch.iterdir())) == 1
        scrapes = [httpx.get(f"{url}/metrics", timeout=30).text for _ in range(6)]
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code in (0, -signal.SIGTERM), logs.read_text()[-3000:]
    lines = json_lines(logs)
    workers = {line["event"] for line in lines if line["event"].startswith("Started server process")}
    assert len(workers) == 2, workers
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    for text in scrapes:  # whichever worker answered the scrape, it counts both workers' requests
        triaged = [
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("deskpilot_http_request_duration_seconds_count{")
            and 'route="/v1/triage"' in line
            and 'status="200"' in line
        ]
        assert triaged == [float(sent)], text
    assert not list(scratch.iterdir())
    store = SqlStore(f"sqlite:///{trained.home / 'deskpilot.db'}")
    try:
        assert all(store.get_decision("acme", request_id) is not None for request_id in ids)
    finally:
        store.close()


def test_store_migrate_prints_the_revision_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = run_cli("store", "migrate", home=home)
    again = run_cli("store", "migrate", home=home)
    expected = f"store schema at revision {migrate.head_revision()}"
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == expected
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == expected
    assert migrate.current(f"sqlite:///{home / 'deskpilot.db'}") == migrate.head_revision()
