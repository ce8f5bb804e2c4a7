"""MicroBatcher with a plain function as the model: merging, answers per caller, failures, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from deskpilot.service.batcher import MicroBatcher


class Model:
    """Echoes each text's number (``"t7"`` -> 7.0) in column 0, so a row shows which text it answers."""

    def __init__(self, *, fail_on: str | None = None, gate: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.gate = gate
        self.lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, str]:
        with self.lock:
            self.batches.append(list(texts))
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError(f"cannot score {self.fail_on!r}")
        ids = np.array([float(t.removeprefix("t")) for t in texts])
        return np.column_stack([ids, -ids]), f"batch of {len(texts)}"


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds the model inside its call until set (always set at the end, so no thread outlives the test)."""
    event = threading.Event()
    yield event
    event.set()


def texts(*numbers: int) -> list[str]:
    return [f"t{n}" for n in numbers]


def test_concurrent_callers_share_model_calls_of_at_most_max_batch() -> None:
    model = Model()
    observed: list[int] = []

    async def scenario() -> list[tuple[np.ndarray, str]]:
        batcher = MicroBatcher(
            model, max_batch=4, max_wait_ms=0, on_batch=lambda size, _seconds: observed.append(size)
        )
        try:
            return await asyncio.gather(*(batcher.predict(texts(i)) for i in range(10)))
        finally:
            await batcher.close()

    results = asyncio.run(scenario())
    assert [len(b) for b in model.batches] == [4, 4, 2], "10 single-text callers, at most 4 texts a call"
    assert observed == [4, 4, 2]
    assert [float(rows[0, 0]) for rows, _ in results] == list(range(10))
    assert [meta for _, meta in results] == ["batch of 4"] * 8 + ["batch of 2"] * 2


def test_each_caller_gets_its_own_rows_in_order() -> None:
    model = Model()
    requests = [texts(1, 2, 3), texts(4), texts(5, 6), texts(7, 8, 9, 10)]

    async def scenario() -> list[tuple[np.ndarray, str]]:
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=1)
        try:
            return await asyncio.gather(*(batcher.predict(r) for r in requests))
        finally:
            await batcher.close()

    results = asyncio.run(scenario())
    assert len(model.batches) == 1, "everything queued together goes in one model call"
    assert model.batches[0] == [t for r in requests for t in r]
    for request, (rows, meta) in zip(requests, results, strict=True):
        assert rows.shape == (len(request), 2)
        assert rows[:, 0].tolist() == [float(t[1:]) for t in request]
        assert meta == "batch of 10"


def test_a_request_larger_than_max_batch_goes_alone_and_whole() -> None:
    model = Model()

    async def scenario() -> list[tuple[np.ndarray, str]]:
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0)
        try:
            return list(
                await asyncio.gather(
                    batcher.predict(texts(1)),
                    batcher.predict(texts(2, 3, 4, 5, 6)),
                    batcher.predict(texts(7)),
                )
            )
        finally:
            await batcher.close()

    first, big, last = asyncio.run(scenario())
    assert model.batches == [texts(1), texts(2, 3, 4, 5, 6), texts(7)]
    assert big[0][:, 0].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert (first[0][0, 0], last[0][0, 0]) == (1.0, 7.0)


def test_a_lone_request_does_not_wait_for_company() -> None:
    async def scenario() -> float:
        batcher = MicroBatcher(Model(), max_batch=64, max_wait_ms=5_000)
        try:
            started = time.perf_counter()
            await asyncio.wait_for(batcher.predict(texts(1)), 2.0)
            return time.perf_counter() - started
        finally:
            await batcher.close()

    assert asyncio.run(scenario()) < 1.0, "max_wait_ms only holds a batch when several callers queue"


def test_a_model_error_reaches_every_caller_of_its_batch_and_the_batcher_keeps_working() -> None:
    model = Model(fail_on="t666")

    async def scenario() -> tuple[list[object], list[object], tuple[np.ndarray, str]]:
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=0)
        try:
            together = await asyncio.gather(
                batcher.predict(texts(1)),
                batcher.predict(texts(666)),
                batcher.predict(texts(2, 3)),
                return_exceptions=True,
            )
            batcher.max_batch = 1  # now each request is its own batch: only the bad one fails
            apart = await asyncio.gather(
                batcher.predict(texts(4)), batcher.predict(texts(666)), return_exceptions=True
            )
            after = await asyncio.wait_for(batcher.predict(texts(5)), 2.0)
            return list(together), list(apart), after
        finally:
            await batcher.close()

    together, apart, after = asyncio.run(scenario())
    assert len(model.batches[0]) == 4
    assert all(isinstance(r, ValueError) and "t666" in str(r) for r in together)
    assert isinstance(apart[1], ValueError)
    ok = apart[0]
    assert isinstance(ok, tuple)
    assert ok[0][0, 0] == 4.0
    assert after[0][0, 0] == 5.0


def test_close_fails_queued_callers_and_refuses_new_ones(gate: threading.Event) -> None:
    model = Model(gate=gate)

    async def scenario() -> BaseException | None:
        batcher = MicroBatcher(model, max_batch=1, max_wait_ms=0)
        first = asyncio.ensure_future(batcher.predict(texts(1)))
        await asyncio.sleep(0.01)  # t1 is in the model; t2 waits in the queue
        queued = asyncio.ensure_future(batcher.predict(texts(2)))
        await asyncio.sleep(0.01)
        await asyncio.wait_for(batcher.close(), 2.0)
        error = await asyncio.wait_for(asyncio.gather(queued, return_exceptions=True), 1.0)
        gate.set()
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        with pytest.raises(RuntimeError, match="closed"):
            await batcher.predict(texts(3))
        result = error[0]
        return result if isinstance(result, BaseException) else None

    error = asyncio.run(scenario())
    assert isinstance(error, RuntimeError)
    assert "shutting down" in str(error)
    assert model.batches == [texts(1)], "the queued request never reached the model"


def test_close_leaves_nothing_counted_as_queued(gate: threading.Event) -> None:
    async def scenario() -> int:
        batcher = MicroBatcher(Model(gate=gate), max_batch=1, max_wait_ms=0)
        first = asyncio.ensure_future(batcher.predict(texts(1)))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(batcher.predict(texts(2, 3)))
        await asyncio.sleep(0.01)
        assert batcher.queued == 2
        await asyncio.wait_for(batcher.close(), 2.0)
        gate.set()
        for future in (first, queued):
            future.cancel()
        await asyncio.gather(first, queued, return_exceptions=True)
        return batcher.queued

    assert asyncio.run(scenario()) == 0, "close() failed the queued requests: none is waiting any more"


def test_close_answers_a_caller_whose_batch_is_in_flight(gate: threading.Event) -> None:
    """A caller without a timeout of its own must not wait forever because the service shut down."""
    model = Model(gate=gate)

    async def scenario() -> object:
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=0)
        caller = asyncio.ensure_future(batcher.predict(texts(1)))
        await asyncio.sleep(0.01)  # the batch is in the model now
        await asyncio.wait_for(batcher.close(), 2.0)
        done, _ = await asyncio.wait({caller}, timeout=0.5)
        gate.set()
        if not done:
            caller.cancel()
            await asyncio.gather(caller, return_exceptions=True)
            return "still waiting 0.5 s after close()"
        return caller.exception()

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, RuntimeError), outcome


def test_close_of_an_unused_batcher_is_clean_and_bad_arguments_are_refused() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(Model())
        with pytest.raises(ValueError, match="nothing to predict"):
            await batcher.predict([])
        await batcher.close()
        await batcher.close()  # twice is harmless

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Model(), max_batch=0)
