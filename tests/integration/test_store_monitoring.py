"""The store's reads for the monitor and the feedback export, and the monitor's run history, on SQLite,
PostgreSQL and the in-memory fake alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
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


def test_monitor_columns_read_a_range_by_id_with_runner_up_and_verdict(store: DecisionStore) -> None:
    late = decision(0, "globex", request_id="r-late", created_at=T0 + timedelta(minutes=3, microseconds=7))
    store.write_decisions(
        [decision(i) for i in range(1, 9)]
        + [
            late,  # stored after r-8 but made earlier: storage order, not time order
            decision(9, alternatives=()),
            decision(
                10, "globex", fallback=True, intent="", confidence=0.0, route=Route.HUMAN, alternatives=()
            ),
            decision(11, model_version="4", alternatives=(("lost_card", 0.2), ("card_arrival", 0.1))),
            decision(40),  # at T0 + 40 min: outside the range
        ]
    )
    store.add_feedback("acme", "r-2", "lost_card")
    store.add_feedback("globex", "r-late", "card_arrival")
    since, until = T0 + timedelta(minutes=2), T0 + timedelta(minutes=12)
    columns = store.monitor_columns(since=since, until=until, page=3)
    assert len(columns) == 11
    assert columns.text.tolist()[:7] == [f"where is my card {i}" for i in range(2, 9)]
    assert columns.text.tolist()[7:9] == ["where is my card 0", "where is my card 9"]
    assert columns.tenant.tolist()[7:9] == ["globex", "acme"]
    assert columns.runner_up.tolist() == pytest.approx([0.05] * 8 + [0.0, 0.0, 0.2])
    assert columns.runner_up.dtype == np.float64
    assert columns.confidence.tolist() == pytest.approx([0.9] * 9 + [0.0, 0.9])
    assert columns.fallback.tolist() == [False] * 9 + [True, False]
    assert columns.intent.tolist()[9] == ""
    assert columns.route.tolist()[8:10] == ["auto", "human"]
    assert columns.model_version.tolist()[-1] == "4"
    assert set(columns.model_name.tolist()) == {"deskpilot-triage"}
    assert columns.review_sample.tolist()[:3] == [False, False, True]
    verdicts = columns.correct_intent.tolist()
    assert verdicts[0] == "lost_card"
    assert verdicts[7] == "card_arrival"
    assert sum(v is not None for v in verdicts) == 2
    assert columns.created_at.dtype == np.dtype("datetime64[us]")
    assert columns.created_at[7] == np.datetime64("2026-11-01T09:03:00.000007")
    assert columns.created_at[0] == np.datetime64("2026-11-01T09:02:00")


def test_monitor_columns_of_one_tenant_and_of_an_empty_range(store: DecisionStore) -> None:
    store.write_decisions([decision(i) for i in range(5)] + [decision(i, "globex") for i in range(5, 10)])
    window = {"since": T0, "until": T0 + timedelta(hours=1)}
    mine = store.monitor_columns(**window, tenant="globex", page=2)
    assert mine.tenant.tolist() == ["globex"] * 5
    assert mine.text.tolist() == [f"where is my card {i}" for i in range(5, 10)]
    empty = store.monitor_columns(since=T0 - timedelta(days=1), until=T0)
    assert len(empty) == 0
    assert empty.created_at.dtype == np.dtype("datetime64[us]")
    assert empty.confidence.dtype == np.float64


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
    overall = store.monitor_runs(10, model_name="deskpilot-triage", overall=True)
    assert [run.decisions for run in overall] == [100, 300]
    assert [run.decisions for run in store.monitor_runs(10, fired=True)] == [300]
    assert store.monitor_runs(10, model_name="another-model") == []
