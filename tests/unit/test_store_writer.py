"""The buffered decision writer against the in-memory store: batching, order, outages, bounds, shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from deskpilot.domain import IntentScore, Prediction, Route, TriageDecision
from deskpilot.errors import StoreNotFoundError, StoreUnavailableError
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.records import DecisionRecord, ShadowRecord
from deskpilot.store.writer import BufferedWriter, ShadowWriter

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(i: int, tenant: str = "acme") -> DecisionRecord:
    return DecisionRecord(
        tenant=tenant,
        request_id=f"req-{i}",
        model_name="deskpilot-triage",
        model_version="3",
        intent="card_arrival",
        confidence=0.9,
        route=Route.AUTO,
        latency_ms=2.5,
        text=f"message {i}",
        created_at=T0 + timedelta(seconds=i),
    )


def written(store: InMemoryStore) -> list[str]:
    return [request_id for batch in store.batches for request_id in batch]


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def make_writer(store: InMemoryStore) -> Iterator[Callable[..., BufferedWriter]]:
    writers: list[BufferedWriter] = []

    def make(**options: object) -> BufferedWriter:
        options.setdefault("retry_backoff_s", (0.01, 0.05))
        writer = BufferedWriter(store, **options)  # type: ignore[arg-type]
        writers.append(writer)
        return writer

    yield make
    store.available = True
    for writer in writers:
        writer.close(timeout=5)


def test_batches_hold_at_most_batch_size_in_submission_order(
    store: InMemoryStore, make_writer: Callable[..., BufferedWriter]
) -> None:
    writer = make_writer(batch_size=64, flush_interval_s=0.01)
    for i in range(1000):
        assert writer.submit(record(i))
    assert writer.flush(timeout=10)
    assert written(store) == [f"req-{i}" for i in range(1000)]
    assert max(len(batch) for batch in store.batches) <= 64
    assert len(store.batches) < 1000  # records were grouped, not written one by one
    assert (writer.depth, writer.dropped, writer.healthy) == (0, 0, True)


def test_a_lone_record_is_written_after_the_flush_interval_without_a_flush(
    store: InMemoryStore, make_writer: Callable[..., BufferedWriter]
) -> None:
    writer = make_writer(batch_size=100, flush_interval_s=0.02)
    writer.submit(record(1))
    assert eventually(lambda: written(store) == ["req-1"], timeout=2)


def test_outage_buffers_then_everything_is_written_once_the_store_returns(
    store: InMemoryStore, make_writer: Callable[..., BufferedWriter]
) -> None:
    depths: list[int] = []
    writer = make_writer(batch_size=8, flush_interval_s=0.001, on_depth=depths.append)
    store.available = False
    for i in range(50):
        assert writer.submit(record(i))
    assert eventually(lambda: store.write_attempts >= 2)
    assert not writer.healthy
    assert writer.depth == 50
    assert not writer.flush(timeout=0.1)

    store.available = True
    assert writer.flush(timeout=5)
    assert written(store) == [f"req-{i}" for i in range(50)]
    assert (writer.depth, writer.dropped, writer.healthy) == (0, 0, True)
    assert depths[-1] == 0
    assert max(depths) == 50


def test_retry_backoff_grows_instead_of_hammering_a_down_store(
    store: InMemoryStore, make_writer: Callable[..., BufferedWriter]
) -> None:
    writer = make_writer(retry_backoff_s=(0.02, 0.2), flush_interval_s=0)
    store.available = False
    writer.submit(record(0))
    started, i = time.monotonic(), 0
    while time.monotonic() - started < 0.6:  # steady traffic during the outage must not cut backoff short
        i += 1
        writer.submit(record(i))
        time.sleep(0.001)
    # 0.6 s of outage: 0.02 + 0.04 + 0.08 + 0.16 + 0.2 + ... is a handful of attempts, not hundreds
    assert 2 <= store.write_attempts <= 10


class LostAckStore(InMemoryStore):
    """Commits the batch, then fails as if the acknowledgement were lost: the writer must retry."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write_decisions(self, records: Sequence[DecisionRecord]) -> None:
        super().write_decisions(records)
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("connection reset after commit")


def test_a_retried_batch_does_not_duplicate_records() -> None:
    store = LostAckStore(failures=3)
    writer = BufferedWriter(store, batch_size=10, flush_interval_s=0, retry_backoff_s=(0.001, 0.01))
    try:
        for i in range(25):
            writer.submit(record(i))
        assert writer.flush(timeout=5)
    finally:
        writer.close(timeout=5)
    stored = store.decisions("acme", limit=100)
    assert sorted(r.request_id for r in stored) == sorted(f"req-{i}" for i in range(25))
    assert len(written(store)) > 25  # some batches really were written more than once
    assert writer.healthy


def test_a_full_buffer_drops_new_records_counts_them_and_logs_once_per_burst(
    store: InMemoryStore, make_writer: Callable[..., BufferedWriter], caplog: pytest.LogCaptureFixture
) -> None:
    drops: list[int] = []
    writer = make_writer(max_buffer=10, batch_size=4, flush_interval_s=0, on_drop=drops.append)
    store.available = False
    with caplog.at_level(logging.WARNING, logger="deskpilot.store.writer"):
        accepted = [writer.submit(record(i)) for i in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    assert writer.dropped == 5
    assert sum(drops) == 5
    full = [r for r in caplog.records if "dropping new decisions" in r.getMessage()]
    assert len(full) == 1

    store.available = True
    assert writer.flush(timeout=5)
    assert written(store) == [f"req-{i}" for i in range(10)]  # the oldest kept, a gap-free prefix
    with caplog.at_level(logging.WARNING, logger="deskpilot.store.writer"):
        assert writer.submit(record(99))
    assert any("accepts again after dropping 5" in r.getMessage() for r in caplog.records)


def test_close_drains_the_buffer_and_refuses_later_records(
    store: InMemoryStore, make_writer: Callable[..., BufferedWriter]
) -> None:
    writer = make_writer(batch_size=1000, flush_interval_s=60)  # would wait a minute to fill a batch
    for i in range(300):
        writer.submit(record(i))
    started = time.monotonic()
    assert writer.close(timeout=5)
    assert time.monotonic() - started < 2
    assert len(written(store)) == 300
    assert not writer.submit(record(301))
    assert writer.dropped == 1


def test_close_with_the_store_down_gives_up_at_the_timeout_and_counts_the_loss(
    store: InMemoryStore, make_writer: Callable[..., BufferedWriter], caplog: pytest.LogCaptureFixture
) -> None:
    drops: list[int] = []
    writer = make_writer(on_drop=drops.append, flush_interval_s=0)
    store.available = False
    for i in range(20):
        writer.submit(record(i))
    with caplog.at_level(logging.ERROR, logger="deskpilot.store.writer"):
        assert not writer.close(timeout=0.2)
    assert writer.dropped == 20
    assert sum(drops) == 20
    assert any("20 decisions lost" in r.getMessage() for r in caplog.records)


def test_submit_never_raises_even_when_the_metric_hooks_do(
    store: InMemoryStore, make_writer: Callable[..., BufferedWriter]
) -> None:
    def broken(_: int) -> None:
        raise RuntimeError("metrics backend gone")

    writer = make_writer(max_buffer=1, on_drop=broken, on_depth=broken, flush_interval_s=60)
    store.available = False
    assert writer.submit(record(1))
    assert not writer.submit(record(2))


class BuggyStore(InMemoryStore):
    def write_decisions(self, records: Sequence[DecisionRecord]) -> None:
        if any(r.request_id == "req-poison" for r in records):
            raise TypeError("a bug, not an outage")
        super().write_decisions(records)


def test_an_unexpected_error_drops_that_batch_and_the_writer_keeps_going() -> None:
    store = BuggyStore()
    writer = BufferedWriter(store, flush_interval_s=0, retry_backoff_s=(0.001, 0.01))
    try:
        writer.submit(replace(record(1), request_id="req-poison"))
        assert eventually(lambda: writer.dropped == 1)
        writer.submit(record(2))
        assert writer.flush(timeout=5)
    finally:
        writer.close(timeout=5)
    assert written(store) == ["req-2"]


def test_concurrent_submitters_lose_nothing(
    store: InMemoryStore, make_writer: Callable[..., BufferedWriter]
) -> None:
    writer = make_writer(batch_size=50, flush_interval_s=0.001)

    def submit_many(start: int) -> None:
        for i in range(start, start + 500):
            assert writer.submit(record(i))

    threads = [threading.Thread(target=submit_many, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.flush(timeout=10)
    assert len(set(written(store))) == len(written(store)) == 2000


def test_the_fake_store_scopes_feedback_to_the_tenant(store: InMemoryStore) -> None:
    store.write_decisions([record(1, tenant="acme")])
    assert store.add_feedback("acme", "req-1", "lost_card").predicted_intent == "card_arrival"
    with pytest.raises(StoreNotFoundError):
        store.add_feedback("globex", "req-1", "lost_card")
    assert store.get_decision("globex", "req-1") is None


def test_a_record_is_built_from_the_service_decision() -> None:
    decision = TriageDecision(
        request_id="r1",
        prediction=Prediction("card_arrival", 0.8, (IntentScore("lost_card", 0.15),)),
        route=Route.HUMAN,
        model_version="7",
        reason="below threshold",
    )
    rec = DecisionRecord.from_decision(
        decision, tenant="acme", model_name="deskpilot-triage", text="[EMAIL] my card?", latency_ms=3.0
    )
    assert rec.alternatives == (("lost_card", 0.15),)
    assert (rec.route, rec.reason, rec.model_version, rec.created_at.tzinfo) == (
        Route.HUMAN,
        "below threshold",
        "7",
        UTC,
    )


@pytest.mark.parametrize(
    "change",
    [
        {"tenant": ""},
        {"confidence": float("nan")},
        {"created_at": datetime(2026, 1, 1)},  # naive on purpose
    ],
)
def test_a_bad_record_fails_where_it_is_made(change: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"tenant|finite|timezone"):
        replace(record(1), **change)  # type: ignore[arg-type]


def test_the_shadow_writer_carries_shadow_answers_through_write_shadow(
    store: InMemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    def answer(i: int) -> ShadowRecord:
        return ShadowRecord(
            tenant="acme",
            request_id=f"req-{i}",
            model_name="deskpilot-triage",
            model_version="4",
            intent="card_arrival",
            confidence=0.5,
            route=Route.HUMAN,
            created_at=T0 + timedelta(seconds=i),
        )

    drops: list[int] = []
    writer = ShadowWriter(
        store,
        max_buffer=5,
        batch_size=2,
        flush_interval_s=0,
        retry_backoff_s=(0.01, 0.05),
        on_drop=drops.append,
    )
    try:
        store.available = False
        with caplog.at_level(logging.WARNING, logger="deskpilot.store.writer"):
            accepted = [writer.submit(answer(i)) for i in range(7)]
        assert accepted == [True] * 5 + [False] * 2
        assert sum(drops) == 2
        assert any("shadow log buffer is full (5 shadow answers)" in r.getMessage() for r in caplog.records)
        store.available = True
        assert writer.flush(timeout=5)
        store.write_decisions([replace(record(i), model_version="3") for i in range(5)])
        pairs = store.shadow_comparison("deskpilot-triage", "4")
        assert [p.request_id for p in pairs] == [f"req-{i}" for i in range(5)]
        assert store.batches == [tuple(f"req-{i}" for i in range(5))]  # the decision log saw none of them
    finally:
        writer.close(timeout=5)
