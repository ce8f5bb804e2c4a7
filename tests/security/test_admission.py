"""Admission: what a request may cost the service before it is refused, and who is refused when it is full.

Finding 1: 75,000 schema-invalid items cost half a second of event-loop CPU and a 5.4 MB list of errors, and
refused requests were never charged to the tenant. Now the item count is refused before any item is
validated, an error list stops at 20 (with the count), and every request pays a door fee by body size before
its body is read (kept when it is refused).
Finding 6: nothing bounded the model queue, timed-out or abandoned requests were computed anyway, and a
timed-out request queued again on the fallback. Now the queue is bounded in characters and sheds with 503
and ``Retry-After`` (the tenant holding the most first), tenants are served in turn, and a request that
waited past its budget behind a working model is shed, never computed, never sent to the fallback.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deskpilot.api.app import create_app
from deskpilot.domain import Role, Ticket
from deskpilot.errors import ConfigError, OverloadedError
from deskpilot.registry.mlflow_registry import MlflowRegistry
from deskpilot.service.batcher import (
    SHED_BACKLOG,
    SHED_DEADLINE,
    SHED_EVICTED,
    SHED_QUEUE_FULL,
    MicroBatcher,
)
from deskpilot.service.models import LoadedModel
from deskpilot.service.triage import ServiceLimits, TriageService
from tests.integration.api_fixtures import (
    ACME_KEY,
    GLOBEX_KEY,
    TINY_KEY,
    TrainedHome,
    running,
    settings_for,
    trained_home,
)
from tests.live_server import LiveServer
from tests.unit.service_fakes import installed
from tests.unit.test_service_core import Harness, build

SMALL_KEY = "small-key-0123456789abcdef"  # a tenant with a bucket of 3 tokens that does not refill
MID_KEY = "mid-key-0123456789abcdef"  # 100 tokens, no refill
KEYS = [
    f"acme:{ACME_KEY}",
    f"globex:{GLOBEX_KEY}",
    f"tiny:{TINY_KEY}",
    f"small:{SMALL_KEY}",
    f"mid:{MID_KEY}",
]


def shared_trained_home(factory: pytest.TempPathFactory) -> TrainedHome:
    """One trained tfidf home for every live server of the security suite's admission, edge and fairness
    modules, trained once per test session (the first module to ask trains it; the others find it)."""
    root = factory.getbasetemp() / "security-shared-home"
    marker = root / "versions.json"
    if not marker.exists():
        trained = trained_home(root / "home", versions=1)
        marker.write_text(json.dumps(trained.versions))
        return trained
    home = root / "home"
    registry = MlflowRegistry(
        f"sqlite:///{home / 'mlflow.db'}", artifact_root=home / "mlartifacts", cache_dir=home / "cache"
    )
    return TrainedHome(home, registry, tuple(json.loads(marker.read_text())))


def metric(server: LiveServer, sample: str, *, key: str | None = None, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels`` (``key``: the operator's)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    text = httpx.get(f"{server.url}/metrics", headers=headers, timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


@contextmanager
def champion_held(server: LiveServer) -> Iterator[tuple[threading.Event, threading.Event, list[str]]]:
    """The champion waits for ``release`` before every call (``entered`` tells that one started); yields
    (entered, release, texts it computed)."""
    champion: LoadedModel | None = server.app.state.parts.service.models.champion
    assert champion is not None
    original = champion.model.predict_proba
    entered, release = threading.Event(), threading.Event()
    computed: list[str] = []

    def held(texts: Sequence[str]) -> np.ndarray:
        entered.set()
        release.wait(30)
        computed.extend(texts)
        return original(texts)

    champion.model.predict_proba = held  # type: ignore[method-assign]
    try:
        yield entered, release, computed
    finally:
        release.set()
        del champion.model.predict_proba


def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s}s")
        time.sleep(0.01)


@pytest.fixture
def scripted_family(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The service-core fakes' scripted model family (for the tests that run the service without HTTP)."""
    yield from installed(monkeypatch)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return shared_trained_home(tmp_path_factory)


@pytest.fixture(scope="module")
def server(trained: TrainedHome) -> Iterator[LiveServer]:
    settings = settings_for(
        trained,
        api_keys=KEYS,
        rate_limit_overrides="tiny=0.5/2,small=0.001/3,mid=0.001/100",
        max_batch_items=256,
        max_body_bytes=1_048_576,
        reload_interval_s=0,
    )
    with running(settings) as live:
        yield live


# ---- finding 1: invalid batches ------------------------------------------------------------------


def test_75000_invalid_items_are_refused_before_any_is_validated(server: LiveServer) -> None:
    body = json.dumps({"items": [{"text": 1}] * 75_000}).encode()
    assert len(body) < 1_048_576
    with server.client(ACME_KEY) as client:
        started = time.perf_counter()
        response = client.post("/v1/triage/batch", content=body, headers={"content-type": "application/json"})
        took = time.perf_counter() - started
    print(f"75,000 invalid items ({len(body):,} bytes): {response.status_code} in {took * 1000:.0f} ms")
    assert response.status_code == 413, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"max_batch_items": 256}
    assert len(response.content) < 1_000, "one error, not one per item"


def test_a_schema_error_lists_at_most_20_problems_and_counts_them(server: LiveServer) -> None:
    with server.client(ACME_KEY) as client:
        response = client.post("/v1/triage/batch", json={"items": [{"text": 1}] * 256})
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert len(details["errors"]) == 20
    assert details["error_count"] == 256
    assert details["errors"][0] == {"field": "items.0.text", "problem": "Input should be a valid string"}


def test_refused_requests_cost_the_tenant_tokens(server: LiveServer) -> None:
    """Tenant ``small`` has 3 tokens and no refill: three invalid batches spend them, the fourth is 429."""
    invalid = {"items": [{"text": 1}, {"text": 2}]}
    with server.client(SMALL_KEY) as client:
        statuses = [client.post("/v1/triage/batch", json=invalid).status_code for _ in range(5)]
        last = client.post("/v1/triage", json={"text": "my card has not arrived"})
    assert statuses == [422, 422, 422, 429, 429]
    assert last.status_code == 429
    assert int(last.headers["retry-after"]) >= 1


def test_a_large_refused_body_costs_by_its_size(server: LiveServer) -> None:
    """Tenant ``mid`` has 100 tokens: one refused 800 kB body (one token per 4 kB, at most the burst)
    leaves nothing for the next request."""
    body = json.dumps({"items": [{"text": 1}] * 75_000}).encode()
    with server.client(MID_KEY) as client:
        refused = client.post("/v1/triage/batch", content=body, headers={"content-type": "application/json"})
        after = client.post("/v1/triage", json={"text": "my card has not arrived"})
    assert refused.status_code == 413
    assert after.status_code == 429, after.text


# ---- finding 6: a bounded queue, shed fairly -----------------------------------------------------


def test_a_full_queue_sheds_the_heaviest_tenant_with_503_and_retry_after(trained: TrainedHome) -> None:
    """With room for 1,200 characters: globex fills the queue while the model is busy; acme's request still
    gets in (globex's newest is dropped to make room), and globex's next one is refused at once."""
    settings = settings_for(
        trained, max_batch_items=4, queue_max_chars=1_200, model_timeout_s=30.0, reload_interval_s=0
    )
    long_text = "my card has not arrived yet " * 10  # 279 characters once trimmed
    batch = {"items": [{"text": long_text}] * 4}  # 1,116 characters
    with (
        running(settings) as server,
        champion_held(server) as (entered, release, _computed),
        server.client(ACME_KEY) as acme,
        server.client(GLOBEX_KEY) as globex,
        ThreadPoolExecutor(4) as pool,
    ):
        champion_queue = server.app.state.parts.service._batchers[Role.CHAMPION]  # read-only look
        first = pool.submit(acme.post, "/v1/triage", json={"text": "lost card"})
        assert entered.wait(20), "the first request reached the model"
        filler = pool.submit(globex.post, "/v1/triage/batch", json=batch)
        wait_until(lambda: champion_queue.queued == 4, what="globex's batch queued")
        light = pool.submit(acme.post, "/v1/triage", json={"text": long_text})
        evicted = filler.result(timeout=20)
        refused = globex.post("/v1/triage/batch", json=batch)
        release.set()
        answered = [first.result(timeout=30), light.result(timeout=30)]
        shed = {r: metric(server, "deskpilot_shed_total", reason=r) for r in (SHED_EVICTED, SHED_QUEUE_FULL)}
    assert [r.status_code for r in answered] == [200, 200], [r.text for r in answered]
    for response, reason in ((evicted, SHED_EVICTED), (refused, SHED_QUEUE_FULL)):
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert (error["code"], error["details"]["reason"]) == ("overloaded", reason)
        assert int(response.headers["retry-after"]) >= 1
    assert shed == {SHED_EVICTED: 1.0, SHED_QUEUE_FULL: 1.0}


@pytest.mark.usefixtures("scripted_family")
def test_requests_that_outwait_their_budget_are_shed_never_computed_nor_sent_to_the_fallback() -> None:
    """200 callers at once, a model that takes 20 ms a call (one text each), a budget of 1 s: about 4 s of
    work. Before, every text was computed and every timed-out caller queued again on the fallback."""
    h: Harness = build(timeout_s=1.0)
    try:
        h.service.limits = ServiceLimits(max_batch=1, max_wait_ms=0, model_timeout_s=1.0)
        champion, fallback = h.model(Role.CHAMPION), h.model(Role.FALLBACK)
        original = champion.predict_proba

        def slow(texts: Sequence[str]) -> np.ndarray:
            time.sleep(0.02)
            return original(texts)

        champion.predict_proba = slow

        async def scenario(service: TriageService) -> list[object]:
            calls = [service.triage("acme", [Ticket(f"card question {i}")]) for i in range(200)]
            return list(await asyncio.gather(*calls, return_exceptions=True))

        results = h.run(scenario)
    finally:
        h.writer.close(1.0)
        h.shadow_writer.close(1.0)
    answered = [r for r in results if not isinstance(r, BaseException)]
    shed = [r for r in results if isinstance(r, OverloadedError)]
    computed = sum(len(batch) for batch in champion.calls)
    sent_on = sum(len(batch) for batch in fallback.calls)
    print(f"answered {len(answered)}, shed {len(shed)}, computed {computed}, fallback {sent_on}")
    assert len(answered) + len(shed) == 200, [r for r in results if isinstance(r, BaseException)][:3]
    assert len(shed) >= 100
    assert {e.details["reason"] for e in shed} == {SHED_DEADLINE}
    assert computed <= len(answered) + 2, "a shed request is never computed"
    assert sent_on <= 10, "overload is not passed to the fallback (only a caller timed out inside its call)"
    assert h.counted("deskpilot_shed_total", reason=SHED_DEADLINE) == len(shed)


class GatedModel:
    """Records each call's texts; every call waits for ``gate``."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, str]:
        self.calls.append(list(texts))
        self.entered.set()
        self.gate.wait(10)
        return np.zeros((len(texts), 2)), "meta"


def test_tenants_are_served_in_turn_not_behind_a_backlog() -> None:
    model = GatedModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0)
        try:
            first = asyncio.ensure_future(batcher.predict(["noisy-0"], tenant="noisy"))
            while not model.entered.is_set():
                await asyncio.sleep(0.001)
            backlog = [
                asyncio.ensure_future(batcher.predict([f"noisy-{i}"], tenant="noisy")) for i in range(1, 7)
            ]
            await asyncio.sleep(0)
            quiet = asyncio.ensure_future(batcher.predict(["quiet"], tenant="quiet"))
            await asyncio.sleep(0)
            model.gate.set()
            await asyncio.wait_for(asyncio.gather(first, quiet, *backlog), 10)
        finally:
            model.gate.set()
            await batcher.close()

    asyncio.run(scenario())
    assert model.calls[0] == ["noisy-0"]
    assert model.calls[1][0] == "quiet", model.calls  # not behind the six queued before it
    assert [t for call in model.calls for t in call if t.startswith("noisy")] == [
        f"noisy-{i}" for i in range(7)
    ]


def test_the_queue_drops_the_heaviest_tenants_newest_request_first() -> None:
    model = GatedModel()

    async def scenario() -> tuple[list[object], object]:
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=0)
        cap = 100
        try:
            first = asyncio.ensure_future(batcher.predict(["x" * 10], tenant="noisy", max_queued_chars=cap))
            while not model.entered.is_set():
                await asyncio.sleep(0.001)
            noisy = [
                asyncio.ensure_future(batcher.predict(["n" * 30], tenant="noisy", max_queued_chars=cap))
                for _ in range(3)
            ]
            await asyncio.sleep(0)
            quiet = asyncio.ensure_future(batcher.predict(["q" * 20], tenant="quiet", max_queued_chars=cap))
            await asyncio.sleep(0)
            with pytest.raises(OverloadedError) as full:
                await batcher.predict(["n" * 30], tenant="noisy", max_queued_chars=cap)
            model.gate.set()
            outcomes = await asyncio.gather(first, quiet, *noisy, return_exceptions=True)
            return list(outcomes), full.value.details["reason"]
        finally:
            model.gate.set()
            await batcher.close()

    outcomes, refused_for = asyncio.run(scenario())
    first, quiet, *noisy = outcomes
    assert not isinstance(first, BaseException)
    assert not isinstance(quiet, BaseException), "the light tenant got in"
    assert not isinstance(noisy[0], BaseException)
    assert not isinstance(noisy[1], BaseException)
    assert isinstance(noisy[2], OverloadedError), "the heaviest tenant's newest request made room"
    assert noisy[2].details["reason"] == SHED_EVICTED
    assert refused_for == SHED_QUEUE_FULL, "the heaviest tenant itself is refused, not let in by eviction"
    assert "q" * 20 in [text for call in model.calls for text in call]
    assert sum(len(call) for call in model.calls) == 4, "the dropped request was never computed"


def test_the_queue_limit_cannot_be_set_below_one_full_batch(trained: TrainedHome) -> None:
    """Such a batch could never be admitted: it would be 503 for ever, however often it is retried."""
    with pytest.raises(ConfigError, match="QUEUE_MAX_CHARS"):
        create_app(settings_for(trained, max_batch_items=16, max_text_length=300, queue_max_chars=1000))


def test_a_large_request_goes_in_parts_and_another_tenant_goes_between_them() -> None:
    """Before, a 256-ticket batch was one model call of about a second, and everyone waited for all of it."""
    model = GatedModel()

    async def scenario() -> np.ndarray:
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0)
        try:
            large = asyncio.ensure_future(
                batcher.predict([f"big-{i}" for i in range(6)], tenant="noisy", whole=False)
            )
            while not model.entered.is_set():
                await asyncio.sleep(0.001)
            quiet = asyncio.ensure_future(batcher.predict(["quiet"], tenant="quiet"))
            await asyncio.sleep(0)
            model.gate.set()
            rows, _ = await asyncio.wait_for(large, 10)
            await asyncio.wait_for(quiet, 10)
            return rows
        finally:
            model.gate.set()
            await batcher.close()

    rows = asyncio.run(scenario())
    assert model.calls == [["big-0", "big-1"], ["quiet"], ["big-2", "big-3"], ["big-4", "big-5"]]
    assert rows.shape == (6, 2), "the caller gets all its rows, in order, as one answer"


def test_parts_answered_by_a_replaced_model_are_computed_again_by_the_new_one() -> None:
    calls: list[tuple[str, list[str]]] = []
    serving = ["v1"]

    def model(texts: Sequence[str]) -> tuple[np.ndarray, str]:
        version = serving[0]
        calls.append((version, list(texts)))
        serving[0] = "v2"  # the champion is replaced right after the first part
        return np.zeros((len(texts), 2)), version

    async def scenario() -> str:
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0)
        try:
            _, version = await batcher.predict(["a", "b", "c", "d"], whole=False)
            return version
        finally:
            await batcher.close()

    assert asyncio.run(scenario()) == "v2"
    assert calls == [("v1", ["a", "b"]), ("v2", ["c", "d"]), ("v2", ["a", "b"])]


def test_a_request_that_could_not_finish_in_its_budget_is_refused_before_it_is_queued() -> None:
    """Once a large batch has shown the model's pace, a request whose queue ahead would outlast half its
    budget is refused at once (the pace here is at most 100,000 characters a second: each call sleeps 0.1 s
    on 10,000); a light tenant's request still gets in, and an empty queue takes anything."""

    def model(texts: Sequence[str]) -> tuple[np.ndarray, str]:
        time.sleep(0.1)
        return np.zeros((len(texts), 2)), "meta"

    async def scenario() -> tuple[OverloadedError, object]:
        batcher = MicroBatcher(model, max_batch=1, max_wait_ms=0)
        try:
            await batcher.predict(["x" * 10_000], tenant="noisy")  # shows the pace
            busy = asyncio.ensure_future(batcher.predict(["w" * 10_000], tenant="noisy"))  # in the model
            waiting = asyncio.ensure_future(batcher.predict(["v" * 10_000], tenant="noisy"))  # queued
            await asyncio.sleep(0.01)
            assert batcher.queued_chars == 10_000
            with pytest.raises(OverloadedError) as refused:
                await batcher.predict(["y" * 10_000] * 5, tenant="noisy", timeout_s=0.2)
            light = await batcher.predict(["z" * 20], tenant="quiet", timeout_s=5.0)
            await asyncio.gather(busy, waiting)
            return refused.value, light
        finally:
            await batcher.close()

    refused, light = asyncio.run(scenario())
    assert refused.details["reason"] == SHED_BACKLOG
    assert int(refused.details["retry_after_s"]) >= 1
    assert isinstance(light, tuple), "a light request is still admitted"


@pytest.mark.usefixtures("scripted_family")
def test_a_canary_challenger_too_slow_for_its_share_is_answered_for_by_the_champion() -> None:
    """Shedding is for the champion's queue; a slow canary is the rollout guard's to judge (and roll back)."""
    h: Harness = build(timeout_s=0.5)
    try:
        h.service.limits = ServiceLimits(max_batch=1, max_wait_ms=0, model_timeout_s=0.5)
        h.stage("canary", 100)
        challenger = h.model(Role.CHALLENGER)
        original = challenger.predict_proba

        def slow(texts: Sequence[str]) -> np.ndarray:
            time.sleep(0.05)
            return original(texts)

        challenger.predict_proba = slow

        async def scenario(service: TriageService) -> list[object]:
            calls = [service.triage("acme", [Ticket(f"card {i}", id=f"t-{i}")]) for i in range(40)]
            return list(await asyncio.gather(*calls, return_exceptions=True))

        results = h.run(scenario)
    finally:
        h.writer.close(1.0)
        h.shadow_writer.close(1.0)
    assert not [r for r in results if isinstance(r, BaseException)], "no 503 for a slow challenger"
    by_champion = [r[0].decision for r in results if r[0].decision.fallback]  # type: ignore[index]
    assert by_champion, "40 calls of 50 ms against a 0.5 s budget: some waited too long"
    assert all(d.reason.startswith("challenger model") for d in by_champion)
    assert any("challenger model overloaded" in d.reason for d in by_champion)
