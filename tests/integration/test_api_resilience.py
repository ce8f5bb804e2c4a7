"""Resilience of the live service: fallback, hot reload under load, broken candidates, store outages.

Faults are injected into the running app's parts (``server.app.state.parts``): a primary model that raises,
returns garbage or stalls; a registry alias moved to a new or a corrupt version; a store that goes away.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from deskpilot.domain import ModelRef
from deskpilot.errors import StoreUnavailableError
from deskpilot.registry.base import ARTIFACT_KEY, CHAMPION, RunRecord
from deskpilot.service.models import LoadedModel
from deskpilot.store import migrate
from deskpilot.store.records import DecisionRecord, FeedbackRecord
from deskpilot.store.sql import SqlStore
from tests.integration.api_fixtures import (
    ACME_KEY,
    MODEL,
    TrainedHome,
    running,
    settings_for,
    trained_home,
)
from tests.live_server import LiveServer

Predict = Callable[[Sequence[str]], np.ndarray]
PRIMARY_FAILED = re.compile(r"^(primary|champion) model failed: ")
# /readyz says why it is not ready only to the operator key (the reasons may name the database)
OPS_KEY = "ops-key-0123456789abcdef"
OPERATOR = {"Authorization": f"Bearer {OPS_KEY}"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("resilience") / "home")


@pytest.fixture(scope="module")
def server(trained: TrainedHome) -> Iterator[LiveServer]:
    """Serves version 1 with version 2 as the fallback; it does not follow the registry (no watcher), so
    tests that move aliases on their own servers cannot change what this one serves."""
    with running(settings_for(trained, reload_interval_s=0, model_timeout_s=0.5)) as live:
        yield live


def metric(server: LiveServer, sample: str, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels`` (0 when there are none)."""
    text = httpx.get(f"{server.url}/metrics", headers=OPERATOR, timeout=10).text  # needed when a key is set
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s}s")
        time.sleep(0.02)


@contextmanager
def predicting(loaded: LoadedModel, predict: Predict) -> Iterator[None]:
    """Make a serving model predict with ``predict`` for a while (an instance attribute shadows it)."""
    loaded.model.predict_proba = predict  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        del loaded.model.predict_proba


def serving(server: LiveServer) -> tuple[LoadedModel, LoadedModel]:
    models = server.app.state.parts.service.models
    champion, fallback = models.champion, models.fallback
    assert champion is not None
    assert fallback is not None
    assert champion is not fallback, "the tests need distinct champion and fallback versions"
    return champion, fallback


def _raises(_texts: Sequence[str]) -> np.ndarray:
    raise RuntimeError("simulated model crash")


def _nan(texts: Sequence[str]) -> np.ndarray:
    return np.full((len(texts), 6), np.nan)


def _wrong_shape(texts: Sequence[str]) -> np.ndarray:
    return np.full((len(texts) + 1, 2), 0.5)


@pytest.mark.parametrize("broken", [_raises, _nan, _wrong_shape], ids=["raises", "nan", "wrong-shape"])
def test_a_failing_primary_is_answered_by_the_fallback(server: LiveServer, broken: Predict) -> None:
    primary, fallback = serving(server)
    before = metric(server, "deskpilot_fallback_total", reason="error")
    with predicting(primary, broken), server.client(ACME_KEY) as client:
        one = client.post("/v1/triage", json={"text": "my card has not arrived yet"})
        batch = client.post("/v1/triage/batch", json={"items": [{"text": "top up failed"}, {"text": "atm"}]})
    assert one.status_code == 200, one.text
    assert batch.status_code == 200, batch.text
    for body in [one.json(), *batch.json()["items"]]:
        assert body["fallback"] is True
        assert body["model_version"] == fallback.version != primary.version
        assert body["intent"] in fallback.model.classes
        assert PRIMARY_FAILED.match(body["reason"]), body["reason"]
    assert metric(server, "deskpilot_fallback_total", reason="error") == before + 2
    with server.client(ACME_KEY) as client:  # the primary serves again once it is healthy
        healthy = client.post("/v1/triage", json={"text": "my card has not arrived yet"}).json()
    assert healthy["fallback"] is False
    assert healthy["model_version"] == primary.version


def test_a_primary_over_its_time_budget_is_answered_by_the_fallback(server: LiveServer) -> None:
    primary, fallback = serving(server)
    release = threading.Event()
    original = primary.model.predict_proba

    def stalls(texts: Sequence[str]) -> np.ndarray:
        release.wait(10)
        return original(texts)

    before = metric(server, "deskpilot_fallback_total", reason="timeout")
    with predicting(primary, stalls), server.client(ACME_KEY) as client:
        started = time.monotonic()
        try:
            response = client.post("/v1/triage", json={"text": "how do I change my PIN"})
        finally:
            release.set()
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fallback"] is True
    assert body["model_version"] == fallback.version
    assert "0.5s budget" in body["reason"]
    assert 0.5 <= elapsed < 5.0
    assert metric(server, "deskpilot_fallback_total", reason="timeout") == before + 1


def test_when_both_models_fail_a_person_decides(server: LiveServer) -> None:
    primary, fallback = serving(server)
    before = metric(server, "deskpilot_fallback_total", reason="unavailable")
    with (
        predicting(primary, _raises),
        predicting(fallback, _raises),
        server.client(ACME_KEY) as client,
    ):
        response = client.post("/v1/triage", json={"text": "I was charged twice", "id": "T-9"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["route"] == "human"
    assert body["intent"] is None
    assert body["confidence"] == 0.0
    assert body["alternatives"] == []
    assert body["model_version"] == "none"
    assert body["fallback"] is True
    assert body["id"] == "T-9"
    reason = body["reason"]
    assert PRIMARY_FAILED.match(reason), reason
    assert "simulated model crash; fallback model failed: RuntimeError: simulated model crash" in reason
    assert "routed to a person" in reason
    assert metric(server, "deskpilot_fallback_total", reason="unavailable") == before + 1
    service = server.app.state.parts.service
    assert service.writer.flush(10)
    stored = service.store.get_decision("acme", body["request_id"])
    assert stored is not None
    assert (stored.route.value, stored.intent, stored.fallback) == ("human", "", True)


def test_hot_reload_under_load_fails_no_request(trained: TrainedHome) -> None:
    old, new = trained.versions[:2]
    settings = settings_for(trained, rate_limit_per_s=0, model_timeout_s=5.0)
    seen: list[list[tuple[int, str | None, bool | None]]] = [[] for _ in range(4)]
    stop = threading.Event()

    def post_until_stopped(results: list[tuple[int, str | None, bool | None]]) -> None:
        with live.client(ACME_KEY) as client:
            while not stop.is_set():
                try:
                    response = client.post("/v1/triage", json={"text": "where is my new card"})
                except httpx.HTTPError as exc:
                    results.append((0, type(exc).__name__, None))
                    continue
                body = response.json() if response.status_code == 200 else {}
                results.append((response.status_code, body.get("model_version"), body.get("fallback")))

    with running(settings) as live:
        threads = [threading.Thread(target=post_until_stopped, args=(r,), daemon=True) for r in seen]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: all(len(r) >= 5 for r in seen), what="traffic on the old model")
            trained.registry.set_alias(MODEL, CHAMPION, new)
            wait_until(lambda: all(r[-1][1] == new for r in seen), 20, "every client served by the new model")
            marks = [len(r) for r in seen]
            wait_until(lambda: all(len(r) >= m + 5 for r, m in zip(seen, marks, strict=True)))
            with live.client(ACME_KEY) as client:
                serving_now = client.get("/v1/models").json()["primary"]["version"]
            model_info = metric(live, "deskpilot_model_info", role="champion", version=new)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            trained.registry.set_alias(MODEL, CHAMPION, old)
    results = [item for r in seen for item in r]
    assert {status for status, _, _ in results} == {200}, [r for r in results if r[0] != 200][:5]
    assert not any(fallback for _, _, fallback in results)
    assert {version for _, version, _ in results} == {old, new}
    for per_client in seen:  # one swap per client: old answers, then only new ones
        versions = [version for _, version, _ in per_client]
        first_new = versions.index(new)
        assert set(versions[:first_new]) == {old}
        assert set(versions[first_new:]) == {new}
        assert versions[-5:] == [new] * 5
    assert serving_now == new
    assert model_info == 1.0


def test_without_a_champion_the_fallback_answers_and_readyz_says_why(trained: TrainedHome) -> None:
    champion = trained.registry.alias_version(MODEL, CHAMPION)
    assert champion is not None
    trained.registry.delete_alias(MODEL, CHAMPION)
    try:
        with running(settings_for(trained, ops_key=OPS_KEY)) as server, server.client(ACME_KEY) as client:
            ready = client.get("/readyz", headers=OPERATOR)
            response = client.post("/v1/triage", json={"text": "my card has not arrived"})
            models = client.get("/v1/models").json()
            trained.registry.set_alias(MODEL, CHAMPION, champion)
            wait_until(lambda: client.get("/readyz").status_code == 200, what="ready once promoted")
            promoted = client.post("/v1/triage", json={"text": "my card has not arrived"}).json()
    finally:
        trained.registry.set_alias(MODEL, CHAMPION, champion)
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert any(f"models:/{MODEL}@{CHAMPION} is not set" in p for p in ready.json()["problems"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fallback"] is True
    assert PRIMARY_FAILED.match(body["reason"]), body["reason"]
    assert body["reason"].endswith("LookupError: no model is loaded")
    assert body["model_version"] == models["fallback"]["version"]
    assert models["primary"] is None
    assert models["shares"] == {}
    assert promoted["fallback"] is False
    assert promoted["model_version"] == champion


def test_with_no_model_at_all_every_ticket_goes_to_a_person(tmp_path: Path) -> None:
    empty = TrainedHome(tmp_path / "home", registry=None, versions=())  # type: ignore[arg-type]
    with running(settings_for(empty)) as server, server.client(ACME_KEY) as client:
        ready = client.get("/readyz")
        response = client.post("/v1/triage", json={"text": "hello"})
        models = client.get("/v1/models").json()
    assert ready.status_code == 503
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["route"], body["intent"], body["model_version"]) == ("human", None, "none")
    assert "routed to a person" in body["reason"]
    assert (models["primary"], models["fallback"], models["shares"]) == (None, None, {})


class OutageStore(SqlStore):
    """The real SQL store, plus a switch that makes every call fail as an unreachable database does."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.down = threading.Event()

    def _check(self) -> None:
        if self.down.is_set():
            raise StoreUnavailableError("simulated outage: the database does not answer")

    def write_decisions(self, records: Sequence[DecisionRecord]) -> None:
        self._check()
        super().write_decisions(records)

    def get_decision(self, tenant: str, request_id: str) -> DecisionRecord | None:
        self._check()
        return super().get_decision(tenant, request_id)

    def add_feedback(self, tenant: str, request_id: str, correct_intent: str) -> FeedbackRecord:
        self._check()
        return super().add_feedback(tenant, request_id, correct_intent)

    def ping(self) -> None:
        self._check()
        super().ping()


@pytest.fixture
def outage_store(tmp_path: Path) -> OutageStore:
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    migrate.upgrade(url)
    return OutageStore(url)


@contextmanager
def captured(logger_name: str) -> Iterator[list[logging.LogRecord]]:
    """Records of one logger (and its children), whatever the propagation settings of its parents."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.DEBUG)
    log = logging.getLogger(logger_name)
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield records
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def test_a_store_outage_buffers_decisions_and_flushes_when_it_returns(
    trained: TrainedHome, outage_store: OutageStore
) -> None:
    settings = settings_for(trained, reload_interval_s=0, ops_key=OPS_KEY)
    with running(settings, store=outage_store) as server, server.client(ACME_KEY) as client:
        writer = server.app.state.parts.service.writer
        outage_store.down.set()
        try:
            singles = [client.post("/v1/triage", json={"text": f"card {i} not arrived"}) for i in range(4)]
            batch = client.post("/v1/triage/batch", json={"items": [{"text": "atm"}, {"text": "top up"}]})
            ready = client.get("/readyz", headers=OPERATOR)
            feedback = client.post(
                "/v1/feedback",
                json={"request_id": singles[0].json()["request_id"], "correct_intent": "atm_support"},
            )
            depth = metric(server, "deskpilot_store_queue_depth")
        finally:
            outage_store.down.clear()
        wait_until(lambda: writer.depth == 0, 20, "the buffered decisions written")
        ready_after = client.get("/readyz")
        depth_after = metric(server, "deskpilot_store_queue_depth")
    assert [r.status_code for r in [*singles, batch]] == [200] * 5
    ids = [r.json()["request_id"] for r in singles] + [i["request_id"] for i in batch.json()["items"]]
    assert ready.status_code == 503
    assert any(p.startswith("store unreachable: simulated outage") for p in ready.json()["problems"])
    assert feedback.status_code == 503
    assert feedback.json()["error"]["code"] == "store_unavailable"
    assert depth == len(ids)
    assert ready_after.status_code == 200
    assert depth_after == 0
    assert writer.dropped == 0
    assert all(outage_store.get_decision("acme", request_id) is not None for request_id in ids)


def test_a_full_store_buffer_drops_new_decisions_counted_and_logged_once(
    trained: TrainedHome, outage_store: OutageStore
) -> None:
    settings = settings_for(trained, reload_interval_s=0, store_buffer=3)
    with (
        captured("deskpilot.store") as logs,
        running(settings, store=outage_store) as server,
        server.client(ACME_KEY) as client,
    ):
        writer = server.app.state.parts.service.writer
        outage_store.down.set()
        try:
            responses = [client.post("/v1/triage", json={"text": f"lost card {i}"}) for i in range(7)]
            dropped = metric(server, "deskpilot_store_dropped_total")
            depth = metric(server, "deskpilot_store_queue_depth")
        finally:
            outage_store.down.clear()
        wait_until(lambda: writer.depth == 0, 20, "the buffered decisions written")
    assert [r.status_code for r in responses] == [200] * 7
    assert (dropped, depth) == (4, 3)
    drops = [r for r in logs if "dropping new decisions" in r.getMessage()]
    assert len(drops) == 1
    assert drops[0].levelno == logging.WARNING
    ids = [r.json()["request_id"] for r in responses]
    kept = [outage_store.get_decision("acme", request_id) is not None for request_id in ids]
    assert kept == [True] * 3 + [False] * 4  # what is kept is the oldest, gap-free part of the log


class SlowWriteStore(SqlStore):
    """The real SQL store whose decision writes wait until ``released`` is set (a slow database)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.released = threading.Event()

    def write_decisions(self, records: Sequence[DecisionRecord]) -> None:
        self.released.wait(10)
        super().write_decisions(records)


def test_feedback_right_after_the_answer_waits_for_the_decision_to_be_written(
    trained: TrainedHome, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    migrate.upgrade(url)
    store = SlowWriteStore(url)
    settings = settings_for(trained, reload_interval_s=0)
    with running(settings, store=store) as server, server.client(ACME_KEY) as client:
        answer = client.post("/v1/triage", json={"text": "I want to change my PIN"})
        request_id = answer.json()["request_id"]
        assert store.get_decision("acme", request_id) is None  # still in the write buffer
        threading.Timer(0.3, store.released.set).start()
        verdict = client.post(
            "/v1/feedback", json={"request_id": request_id, "correct_intent": "activate_my_card"}
        )
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["request_id"] == request_id


def _register_broken_version(trained: TrainedHome) -> str:
    """A new version of the model whose stored artifact is corrupt (tagged gate=fail, so it is never
    picked as the fallback either)."""
    registry = trained.registry
    model = registry.load(ModelRef(MODEL, version=trained.versions[0]))
    version = registry.register(
        model, name=MODEL, record=RunRecord(params={}, metrics={}, tags={"deskpilot.gate": "fail"})
    ).version
    source = MlflowClient(registry.tracking_uri).get_model_version(MODEL, version).source
    assert source is not None
    model_id = source.rsplit("/", 1)[-1]
    files = trained.home / "mlartifacts" / "models" / model_id / "artifacts" / "artifacts" / ARTIFACT_KEY
    weights = [path for path in (files / "model").iterdir() if path.is_file()]
    assert weights, f"no model files under {files}"
    for path in weights:
        path.write_bytes(b"not a model any more")
    return version


def test_a_broken_champion_never_replaces_the_serving_model(trained: TrainedHome) -> None:
    serving_version = trained.versions[0]
    broken = _register_broken_version(trained)
    try:
        with running(settings_for(trained)) as server, server.client(ACME_KEY) as client:
            before = client.get("/v1/models").json()
            trained.registry.set_alias(MODEL, CHAMPION, broken)
            wait_until(
                lambda: metric(server, "deskpilot_model_load_failures_total", role="champion") >= 2,
                what="two failed reload attempts",
            )
            after = client.get("/v1/models").json()
            answer = client.post("/v1/triage", json={"text": "my card has not arrived"}).json()
            ready = client.get("/readyz")
        # a server that starts while the champion is broken serves the fallback and says why it is not ready
        with running(settings_for(trained, ops_key=OPS_KEY)) as server, server.client(ACME_KEY) as client:
            cold_ready = client.get("/readyz", headers=OPERATOR)
            cold_answer = client.post("/v1/triage", json={"text": "my card has not arrived"}).json()
            failures = metric(server, "deskpilot_model_load_failures_total", role="champion")
    finally:
        trained.registry.set_alias(MODEL, CHAMPION, serving_version)
    serving_keys = ("primary", "fallback", "shares")
    assert [after[k] for k in serving_keys] == [before[k] for k in serving_keys]
    assert before["primary"]["version"] == serving_version
    assert answer["model_version"] == serving_version
    assert answer["fallback"] is False
    assert ready.status_code == 200
    assert cold_ready.status_code == 503
    assert any(f"models:/{MODEL}/{broken} failed to load" in p for p in cold_ready.json()["problems"])
    assert cold_answer["fallback"] is True
    assert cold_answer["model_version"] == before["fallback"]["version"]
    assert failures >= 1
