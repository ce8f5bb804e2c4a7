"""Cutting logged decisions into windows: by range, time and count, per tenant, only the watched version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deskpilot.domain import Route
from deskpilot.monitoring.window import WindowPlan, read_windows
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.records import DecisionRecord

T0 = datetime(2026, 11, 30, tzinfo=UTC)


def logged(
    i: int, tenant: str, *, version: str = "2", fallback: bool = False, minute: int | None = None
) -> DecisionRecord:
    return DecisionRecord(
        tenant=tenant,
        request_id=f"{tenant}-{i}",
        model_name="m",
        model_version=version,
        intent="card_arrival" if i % 2 else "lost_card",
        confidence=0.9 if i % 3 else 0.4,
        route=Route.AUTO if i % 3 else Route.HUMAN,
        alternatives=(("lost_card", 0.05),),
        latency_ms=1.0,
        text=f"message {i}",
        fallback=fallback,
        review_sample=i % 7 == 0,
        created_at=T0 + timedelta(minutes=i if minute is None else minute),
    )


@pytest.fixture
def store() -> InMemoryStore:
    memory = InMemoryStore()
    memory.write_decisions([logged(i, "acme") for i in range(60)] + [logged(i, "globex") for i in range(30)])
    memory.write_decisions([logged(100, "acme", version="1"), logged(101, "acme", fallback=True)])
    memory.add_feedback("acme", "acme-4", "card_arrival")
    return memory


def test_one_window_overall_and_per_tenant_with_only_the_watched_version(store: InMemoryStore) -> None:
    plan = WindowPlan(since=T0, until=T0 + timedelta(hours=3))
    windows = read_windows(store, plan, model_name="m", model_version="2")
    assert [(w.tenant, len(w)) for w in windows] == [(None, 90), ("acme", 60), ("globex", 30)]
    overall = windows[0]
    assert overall.model_versions == {"2": 91, "1": 1}  # counted, not compared
    assert overall.auto.sum() == sum(1 for i in range(60) if i % 3) + sum(1 for i in range(30) if i % 3)
    assert windows[1].margin[1] == pytest.approx(0.9 - 0.05)  # acme-1: confident, runner-up at 0.05
    verdicts = [v for v in windows[1].correct_intent if v is not None]
    assert verdicts == ["card_arrival"]
    assert windows[1].review_sample.sum() == len([i for i in range(60) if i % 7 == 0])


def test_time_windows_split_the_range_and_skip_empty_ones(store: InMemoryStore) -> None:
    plan = WindowPlan(since=T0, until=T0 + timedelta(hours=3), every=timedelta(minutes=20))
    windows = read_windows(store, plan, model_name="m", model_version="2", tenant="acme")
    assert [len(w) for w in windows] == [20, 20, 20]
    assert [w.start for w in windows] == [T0 + timedelta(minutes=20 * k) for k in range(3)]
    assert all(w.tenant == "acme" for w in windows)


def test_count_windows_follow_time_order_not_storage_order() -> None:
    memory = InMemoryStore()
    # stored newest first: the windows must still run oldest to newest
    memory.write_decisions([logged(i, "acme", minute=50 - i) for i in range(50)])
    plan = WindowPlan(since=T0, until=T0 + timedelta(hours=1), count=20)
    windows = read_windows(memory, plan, model_name="m", model_version="2", per_tenant=False)
    assert [len(w) for w in windows] == [20, 20, 10]
    assert windows[0].start == T0 + timedelta(minutes=1)
    assert windows[0].end <= windows[1].start
    assert windows[0].texts[0] == "message 49"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"until": T0}, "end after it starts"),
        ({"every": timedelta(0)}, "longer than zero"),
        ({"count": 0}, "at least one"),
    ],
)
def test_a_plan_that_cannot_be_cut_is_refused(changes: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"since": T0, "until": T0 + timedelta(hours=1), **changes}
    with pytest.raises(ValueError, match=message):
        WindowPlan(**values)  # type: ignore[arg-type]
