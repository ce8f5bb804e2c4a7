"""Safe rollout on a real server, registry, store and audit log, under concurrent load.

Faults are injected into the loaded challenger (an error, a slow call, wrong answers); the guard must roll it
back on its own, with the reason in the audit chain, while callers keep getting 200s from the champion.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deskpilot.domain import ModelRef
from deskpilot.rollout.actions import promote, read_state, rollback
from deskpilot.rollout.split import to_challenger
from deskpilot.store.audit_sql import SqlAuditLog
from tests.helpers import bundled_subset
from tests.integration.api_fixtures import (
    ACME_KEY,
    GLOBEX_KEY,
    MODEL,
    TrainedHome,
    running,
    settings_for,
    trained_home,
)
from tests.live_server import LiveServer

POLICY = """\
version: 1
rollout:
  window_s: 60
  min_requests: 10
  max_error_rate: 0.2
  max_p99_ms: 150
  max_disagreement: 0.9
  feedback_max_drop: 0.05
  feedback_min_samples: 10
  alpha: 0.05
"""
TEXTS = bundled_subset(labels=6, per_label=30, seed=3)
LABELS = dict(zip(TEXTS["text"], TEXTS["label"], strict=True))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("rollout") / "home", versions=2)


@pytest.fixture
def server(trained: TrainedHome, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A server on POLICY; a test may change rule values (or ``model_timeout_s``) with ``indirect``
    parametrization."""
    text = POLICY
    rules = dict(getattr(request, "param", {}))
    model_timeout_s = float(rules.pop("model_timeout_s", 1.0))
    for rule, value in rules.items():
        text = "\n".join(
            f"  {rule}: {value}" if line.strip().startswith(f"{rule}:") else line
            for line in text.splitlines()
        )
    policy = tmp_path / "policy.yaml"
    policy.write_text(text + "\n")
    settings = settings_for(
        trained, policy_file=policy, guard_interval_s=0.2, rate_limit_per_s=0, model_timeout_s=model_timeout_s
    )
    audit = audit_log(trained)
    # every test starts from v1 as the only model serving
    state = read_state(trained.registry, MODEL)
    if state.challenger is not None or state.champion != trained.versions[0]:
        promote(
            trained.registry,
            audit,
            ModelRef(MODEL, version=trained.versions[0]),
            to="champion",
            percent=None,
            actor="test",
            reason="reset",
        )
    with running(settings, registry=trained.registry) as live:
        yield live


def audit_log(trained: TrainedHome) -> SqlAuditLog:
    from deskpilot.config import Settings
    from deskpilot.store import migrate
    from deskpilot.workflows.audit import audit_seal

    url = f"sqlite:///{(trained.home / 'deskpilot.db').resolve()}"
    migrate.upgrade(url)
    return SqlAuditLog(url, seal=audit_seal(Settings(home=trained.home), create_key=True))


def set_stage(trained: TrainedHome, to: str, percent: float | None = None) -> None:
    promote(
        trained.registry,
        audit_log(trained),
        ModelRef(MODEL, version=trained.versions[1]),
        to=to,
        percent=percent,
        actor="test",
        reason=f"test puts v2 in {to}",
    )


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def serving(server: LiveServer) -> dict[str, Any]:
    with server.client(ACME_KEY) as client:
        body: dict[str, Any] = client.get("/v1/models").json()
        return body


@contextmanager
def load(server: LiveServer, threads: int = 4) -> Iterator[list[tuple[int, str]]]:
    """Clients posting continuously until the block ends; yields (status, model_version) of every answer."""
    results: list[tuple[int, str]] = []
    stop = threading.Event()
    texts = TEXTS["text"].tolist()

    def run(offset: int) -> None:
        with server.client(ACME_KEY) as client:
            i = offset
            while not stop.is_set():
                try:
                    response = client.post("/v1/triage", json={"text": texts[i % len(texts)]})
                    results.append((response.status_code, response.json().get("model_version", "")))
                except httpx.HTTPError:
                    results.append((0, ""))
                i += threads

    workers = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield results
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)


# a swap must drop nothing; with the usual 1 s budget, a 2-core CI machine loading the new model while four
# clients post may shed a request as overloaded (503), which is load shedding working, not a swap failure
@pytest.mark.parametrize("server", [{"model_timeout_s": 15.0}], indirect=True)
def test_promote_and_rollback_round_trip_under_load(server: LiveServer, trained: TrainedHome) -> None:
    v1, v2 = trained.versions
    with load(server) as results:
        wait_for(lambda: len(results) > 20)
        set_stage(trained, "champion")
        wait_for(lambda: serving(server)["primary"]["version"] == v2)
        rollback(trained.registry, audit_log(trained), MODEL, actor="test", reason="round trip")
        wait_for(lambda: serving(server)["primary"]["version"] == v1)
        seen = len(results)
        wait_for(lambda: len(results) > seen + 20)
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: len(results)}, statuses
    versions = [version for _, version in results]
    assert v2 in versions
    assert versions[-1] == v1
    actions = [(e.action, e.target) for e in audit_log(trained).entries()][-2:]
    assert actions == [("promote", f"models:/{MODEL}/{v2}"), ("rollback", f"models:/{MODEL}/{v1}")]


# the held shadow call below is slow on purpose: a latency rule would (rightly) roll the challenger back
@pytest.mark.parametrize("server", [{"max_p99_ms": 600000}], indirect=True)
def test_shadow_never_changes_answers_and_never_makes_callers_wait(
    server: LiveServer, trained: TrainedHome
) -> None:
    texts = TEXTS["text"].tolist()[:40]
    with server.client(ACME_KEY) as client:
        before = [client.post("/v1/triage", json={"text": t}).json() for t in texts]
        set_stage(trained, "shadow")
        wait_for(lambda: (serving(server).get("rollout") or {}).get("stage") == "shadow")
        service = server.app.state.parts.service
        challenger = service.models.challenger
        release = threading.Event()
        real = challenger.model.predict_proba

        def held(batch: list[str]) -> np.ndarray:
            release.wait(timeout=120)  # the shadow model is stuck until the callers are all answered
            return real(batch)

        challenger.model.predict_proba = held
        # with the shadow's budget far beyond the client's 30 s timeout, a shadow call in the request path
        # would hang every request below; answered requests prove the shadow runs after the response
        service.shadow.timeout_s = 300.0
        try:
            during = [client.post("/v1/triage", json={"text": t}).json() for t in texts]
        finally:
            release.set()
            challenger.model.predict_proba = real
            service.shadow.timeout_s = 1.0
        wait_for(lambda: (serving(server).get("shadow") or {}).get("compared", 0) >= len(texts))
    assert [(a["intent"], a["route"], a["model_version"]) for a in during] == [
        (b["intent"], b["route"], b["model_version"]) for b in before
    ]
    shadow = serving(server)["shadow"]
    assert 0.0 <= shadow["agreement_rate"] <= 1.0
    assert set(shadow["route_changes"]) == {"auto_to_human", "human_to_auto"}


def test_canary_split_matches_the_share_and_is_sticky(server: LiveServer, trained: TrainedHome) -> None:
    set_stage(trained, "canary", 30)
    wait_for(lambda: serving(server)["challenger"] is not None)
    state = read_state(trained.registry, MODEL)
    ids = [f"ticket-{i}" for i in range(400)]
    with server.client(ACME_KEY) as client:
        first = [
            client.post("/v1/triage", json={"text": "top up failed", "id": i}).json()["model_version"]
            for i in ids
        ]
        again = [
            client.post("/v1/triage", json={"text": "top up failed", "id": i}).json()["model_version"]
            for i in ids
        ]
    v2 = trained.versions[1]
    share = first.count(v2) / len(ids)
    assert abs(share - 0.30) < 4 * (0.3 * 0.7 / len(ids)) ** 0.5
    assert first == again, "a ticket always gets the same model"
    assert [v == v2 for v in first] == [to_challenger(state, "acme", i) for i in ids]
    assert serving(server)["shares"][f"models:/{MODEL}/{v2}"] == pytest.approx(0.30)


def inject(
    server: LiveServer, replacement: Callable[[Callable[[list[str]], np.ndarray], list[str]], np.ndarray]
) -> None:
    challenger = server.app.state.parts.service.models.challenger
    real = challenger.model.predict_proba
    challenger.model.predict_proba = lambda batch: replacement(real, batch)


def rolled_back(server: LiveServer, trained: TrainedHome, rule: str) -> str:
    wait_for(lambda: serving(server)["challenger"] is None, timeout_s=60)
    last = audit_log(trained).entries()[-1]
    assert last.action == "auto_rollback"
    assert last.actor == "deskpilot-service"
    assert rule in last.reason
    with server.client(ACME_KEY) as client:
        assert f'deskpilot_rollbacks_total{{rule="{rule}"}}' in client.get("/metrics").text
    return last.reason


# a budget that CI load cannot exhaust: the champion must answer every request, however starved the machine
@pytest.mark.parametrize("server", [{"model_timeout_s": 15.0}], indirect=True)
def test_a_failing_challenger_is_rolled_back(server: LiveServer, trained: TrainedHome) -> None:
    set_stage(trained, "canary", 50)
    wait_for(lambda: serving(server)["challenger"] is not None)

    def broken(_real: Callable[[list[str]], np.ndarray], _batch: list[str]) -> np.ndarray:
        raise RuntimeError("challenger exploded")

    inject(server, broken)
    with load(server) as results:
        reason = rolled_back(server, trained, "error_rate")
    assert {status for status, _ in results} == {200}, "the champion answered for the failing challenger"
    assert "calls failed" in reason


def test_a_slow_challenger_is_rolled_back(server: LiveServer, trained: TrainedHome) -> None:
    set_stage(trained, "canary", 50)
    wait_for(lambda: serving(server)["challenger"] is not None)

    def slow(real: Callable[[list[str]], np.ndarray], batch: list[str]) -> np.ndarray:
        time.sleep(0.3)  # over the policy's 150 ms p99, under the 1 s budget
        return real(batch)

    inject(server, slow)
    with load(server) as results:
        rolled_back(server, trained, "p99_latency")
    assert {status for status, _ in results} == {200}


def test_a_challenger_wrong_on_feedback_is_rolled_back(server: LiveServer, trained: TrainedHome) -> None:
    set_stage(trained, "canary", 50)
    wait_for(lambda: serving(server)["challenger"] is not None)
    classes = server.app.state.parts.service.models.challenger.model.classes

    def wrong(real: Callable[[list[str]], np.ndarray], batch: list[str]) -> np.ndarray:
        probs = real(batch)
        return np.roll(probs, 1, axis=1)  # confidently the neighbouring intent

    inject(server, wrong)
    # two tenants see it: one tenant's verdicts alone never decide the rule (tests/security)
    with server.client(ACME_KEY) as acme, server.client(GLOBEX_KEY) as globex:
        for i, (text, label) in enumerate(LABELS.items()):
            client = (acme, globex)[i % 2]
            answer = client.post("/v1/triage", json={"text": text, "id": f"fb-{i}"}).json()
            server.app.state.parts.service.writer.flush(10)
            client.post("/v1/feedback", json={"request_id": answer["request_id"], "correct_intent": label})
            if serving(server)["challenger"] is None:
                break
    reason = rolled_back(server, trained, "feedback_accuracy")
    assert "z-test" in reason
    assert "verdicts of 2 tenant(s)" in reason
    assert len(classes) > 1
