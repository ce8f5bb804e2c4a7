"""``POST /v1/feedback`` takes only intents the models know, and never loses a verdict to a busy database.

Findings 2 and 4 (part): ``correct_intent`` was any string, stored raw in the feedback log (and counted by
the rollout monitor); now it is one of the serving models' classes or ``__other__`` ("none of these").
Finding 8: while SQLite held its write lock the decision stayed in the write buffer and its verdict got 404
"no decision", and was lost; now it is 503 with ``Retry-After``, and the same post succeeds later.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from deskpilot.api.app import Overrides, create_app
from deskpilot.config import Settings
from deskpilot.domain import ModelRef, Role, Ticket
from deskpilot.errors import (
    DecisionPendingError,
    StoreNotFoundError,
    StoreUnavailableError,
    UnknownIntentError,
)
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.rollout.actions import promote
from deskpilot.service.triage import TriageService
from deskpilot.store import migrate
from deskpilot.store.audit import InMemoryAuditLog
from deskpilot.store.base import OTHER_INTENT
from deskpilot.store.records import DecisionRecord
from deskpilot.store.sql import SqlStore
from tests.live_server import LiveServer, serve
from tests.unit.service_fakes import CLASSES, MODEL_NAME, installed, register, scripted_model
from tests.unit.test_service_core import Harness, build

ACME = "acme-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from installed(monkeypatch)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = build()
    yield harness
    harness.writer.close(1.0)
    harness.shadow_writer.close(1.0)


async def one_decision(service: TriageService, text: str = "my card") -> str:
    [answer] = await service.triage("acme", [Ticket(text, id="t-1")])
    return answer.decision.request_id


@pytest.mark.parametrize(
    "verdict",
    ["<script>alert(1)</script>", "Card", "card ", "billing\u200b", "x" * 128, "__OTHER__"],
)
def test_a_correct_intent_no_model_knows_is_refused_and_not_stored(h: Harness, verdict: str) -> None:
    async def scenario(service: TriageService) -> None:
        request_id = await one_decision(service)
        with pytest.raises(UnknownIntentError) as refused:
            await service.feedback("acme", request_id, verdict)
        assert refused.value.http_status == 422
        assert OTHER_INTENT in refused.value.message
        assert verdict not in refused.value.message  # free text is not echoed back either
        assert refused.value.details["intents"] == sorted([*CLASSES, OTHER_INTENT])  # what it may say

    h.run(scenario)
    assert h.store.feedback("acme") == []
    assert h.monitor.stats(Role.CHAMPION).feedback == 0


def test_every_class_and_none_of_these_are_taken(h: Harness) -> None:
    async def scenario(service: TriageService) -> list[str]:
        request_id = await one_decision(service)
        taken = [(await service.feedback("acme", request_id, c)).correct_intent for c in CLASSES]
        record = await service.feedback("acme", request_id, OTHER_INTENT)
        assert (record.correct_intent, record.predicted_intent, record.correct) == (
            OTHER_INTENT,
            "card",
            False,
        )
        return taken

    assert h.run(scenario) == list(CLASSES)
    [stored] = h.store.feedback("acme")
    assert stored.correct_intent == OTHER_INTENT
    stats = h.monitor.stats(Role.CHAMPION)
    assert (stats.feedback, stats.feedback_correct) == (1, 0)  # "none of these": the model was wrong


def block_decision_writes(h: Harness, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Decisions cannot be written (SQLite's write lock held elsewhere); reads still work. Returns the
    function that lifts the block."""
    real = h.store.write_decisions
    blocked = [True]

    def write(records: Sequence[DecisionRecord]) -> None:
        if blocked[0]:
            raise StoreUnavailableError("database is locked")
        real(records)

    monkeypatch.setattr(h.store, "write_decisions", write)
    return lambda: blocked.__setitem__(0, False)


def test_feedback_while_decisions_cannot_be_written_is_retry_later_then_kept(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    unblock = block_decision_writes(h, monkeypatch)

    async def scenario(service: TriageService) -> str:
        request_id = await one_decision(service)
        with pytest.raises(DecisionPendingError) as pending:
            await service.feedback("acme", request_id, "card")
        assert pending.value.http_status == 503
        assert pending.value.details["retry_after_s"] >= 1
        assert h.writer.depth == 1  # still buffered, not lost
        assert not h.writer.healthy
        unblock()
        record = await service.feedback("acme", request_id, "card")  # the client's retry
        return record.correct_intent

    assert h.run(scenario) == "card"
    assert [f.correct_intent for f in h.store.feedback("acme")] == ["card"]


def test_a_decision_that_does_not_exist_is_still_not_found(h: Harness) -> None:
    async def scenario(service: TriageService) -> None:
        await one_decision(service)
        with pytest.raises(StoreNotFoundError):
            await service.feedback("acme", "no-such-request", "card")

    h.run(scenario)


# ------------------------------------------------------------------------------ through a real server


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    """A real server on a real SQLite store (WAL, the default), scripted champion."""
    registry, audit = InMemoryRegistry(), InMemoryAuditLog()
    version = register(registry, scripted_model())
    promote(
        registry,
        audit,
        ModelRef(MODEL_NAME, version=version),
        to="champion",
        percent=None,
        actor="t",
        reason="t",
    )
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    settings = Settings(
        home=tmp_path,
        model_name=MODEL_NAME,
        api_keys=[f"acme:{ACME}"],
        rate_limit_per_s=0,
        guard_interval_s=60,
    )
    app = create_app(settings, Overrides(registry=registry, store=SqlStore(url), audit=audit))
    with serve(app) as live:
        yield live, path


def test_feedback_during_a_sqlite_write_lock_answers_503_with_retry_after(
    sqlite_server: tuple[LiveServer, Path],
) -> None:
    server, path = sqlite_server
    lock = sqlite3.connect(path, timeout=0, isolation_level=None)
    with server.client(ACME) as client:
        try:
            lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            answer = client.post("/v1/triage", json={"text": "my card"}).json()
            verdict = {"request_id": answer["request_id"], "correct_intent": "card"}
            response = client.post("/v1/feedback", json=verdict)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "decision_pending"
            assert int(response.headers["Retry-After"]) >= 1
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        deadline = time.monotonic() + 30
        while (response := client.post("/v1/feedback", json=verdict)).status_code == 503:
            assert time.monotonic() < deadline, "the verdict was never taken after the lock went away"
            time.sleep(float(response.headers["Retry-After"]) / 10)
        assert response.status_code == 200, response.text
        other = client.post("/v1/feedback", json={**verdict, "correct_intent": OTHER_INTENT})
        assert (other.status_code, other.json()["correct_intent"]) == (200, OTHER_INTENT)
