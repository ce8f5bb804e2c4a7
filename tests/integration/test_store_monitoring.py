"""The store's reads for the monitor and the feedback export, and the monitor's run history, on SQLite,
PostgreSQL and the in-memory fake alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deskpilot.domain import Route
from deskpilot.store import migrate
from deskpilot.store.base import DecisionStore
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.records import DecisionRecord, MonitorRunRecord
from deskpilot.store.sql import SqlStore

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def decision(i: int, tenant: str = "acme", **changes: object) -> DecisionRecord:
    values: dict[str, object] = {
        "tenant": tenant,
        "request_id": f"r-{i}",
        "model_name": "deskpilot-triage",
        "model_version": "3",
        "intent": "card_arrival",
        "confidence": 0.9,
        "route": Route.AUTO,
        "alternatives": (("lost_card", 0.05),),
        "latency_ms": 1.0,
        "text": f"where is my card {i}",
        "review_sample": i % 4 == 0,
        "created_at": T0 + timedelta(minutes=i),
    }
    values.update(changes)
    return DecisionRecord(**values)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DecisionStore]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    migrate.upgrade(url)
    sql = SqlStore(url)
    yield sql
    sql.close()


def test_scan_pages_through_a_range_in_storage_order_with_verdicts(store: DecisionStore) -> None:
    store.write_decisions([decision(i) for i in range(25)] + [decision(i, "globex") for i in range(25, 30)])
    store.add_feedback("acme", "r-3", "lost_card")
    store.add_feedback("globex", "r-26", "card_arrival")
    since, until = T0 + timedelta(minutes=2), T0 + timedelta(minutes=27)
    pages = list(store.scan_reviewed(since=since, until=until, page=7))
    assert [len(page) for page in pages] == [7, 7, 7, 4]
    rows = [row for page in pages for row in page]
    assert [row.decision.request_id for row in rows] == [f"r-{i}" for i in range(2, 27)]
    verdicts = {row.decision.request_id: row.correct_intent for row in rows if row.correct_intent}
    assert verdicts == {"r-3": "lost_card", "r-26": "card_arrival"}
    assert all(row.feedback_at is not None for row in rows if row.correct_intent)
    assert [row.decision.review_sample for row in rows[:3]] == [False, False, True]


def test_scan_can_be_limited_to_one_tenant_and_to_reviewed_decisions(store: DecisionStore) -> None:
    store.write_decisions([decision(i) for i in range(5)] + [decision(i, "globex") for i in range(5, 10)])
    store.add_feedback("acme", "r-1", "lost_card")
    store.add_feedback("globex", "r-7", "lost_card")
    mine = [row for page in store.scan_reviewed(tenant="globex") for row in page]
    assert {row.decision.tenant for row in mine} == {"globex"}
    assert len(mine) == 5
    reviewed = [row for page in store.scan_reviewed(reviewed_only=True) for row in page]
    assert [(row.decision.tenant, row.decision.request_id) for row in reviewed] == [
        ("acme", "r-1"),
        ("globex", "r-7"),
    ]


def test_monitor_runs_come_back_oldest_first_with_their_result(store: DecisionStore) -> None:
    for i in range(4):
        store.add_monitor_run(
            MonitorRunRecord(
                started_at=T0 + timedelta(hours=i),
                finished_at=T0 + timedelta(hours=i, seconds=3),
                since=T0 + timedelta(hours=i - 1),
                until=T0 + timedelta(hours=i),
                tenant=None if i % 2 else "acme",
                model_name="deskpilot-triage",
                model_version="3",
                decisions=100 * i,
                fired=i == 3,
                result={"signals": [{"name": "confidence", "q_value": 0.5 / (i + 1)}]},
            )
        )
    runs = store.monitor_runs(limit=3)
    assert [run.decisions for run in runs] == [100, 200, 300]
    assert [run.tenant for run in runs] == [None, "acme", None]
    assert runs[-1].fired
    assert runs[-1].result["signals"][0]["q_value"] == pytest.approx(0.125)
    assert runs[0].id is not None
    assert runs[0].id < runs[-1].id
