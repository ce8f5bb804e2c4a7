"""Adaptive micro-batching: concurrent requests share one model call, and a lone request never waits.

Requests queue texts and await a future. One worker task takes everything queued (up to ``max_batch``),
runs a single ``predict_proba`` on a dedicated thread (the event loop stays free to accept requests), and
answers each request with its rows. While the model runs, new requests queue up, so batches grow with load
by themselves. ``max_wait_ms`` optionally holds a batch open a little longer when it is not yet full and
something is already in flight elsewhere; with no other traffic, a request is predicted at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from opentelemetry import trace
from opentelemetry.context import Context

from deskpilot.service.observability import span as span_of

Meta = TypeVar("Meta")
BatchPredict = Callable[[Sequence[str]], tuple[np.ndarray, Meta]]
BatchObserver = Callable[[int, float], None]  # batch size, seconds in the model


@dataclass
class _Pending(Generic[Meta]):
    texts: Sequence[str]
    future: asyncio.Future[tuple[np.ndarray, Meta]]
    span: trace.SpanContext = field(default_factory=lambda: trace.get_current_span().get_span_context())


class MicroBatcher(Generic[Meta]):
    """Batches calls of ``predict`` (texts -> probabilities plus what produced them, e.g. the model version
    serving that batch); create and use it inside one running event loop."""

    def __init__(
        self,
        predict: BatchPredict[Meta],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        name: str = "model",
        on_batch: BatchObserver | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self._on_batch = on_batch
        self._tracer = tracer or trace.NoOpTracer()
        self._name = name
        self._queue: deque[_Pending[Meta]] = deque()
        self._queued_texts = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"deskpilot-{name}")
        self._closed = False

    @property
    def queued(self) -> int:
        return self._queued_texts

    async def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, Meta]:
        """Probabilities for ``texts`` (and the batch's meta), computed with whatever else is waiting."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        if not texts:
            raise ValueError("nothing to predict")
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="deskpilot-microbatcher")
        pending: _Pending[Meta] = _Pending(texts, loop.create_future())
        self._queue.append(pending)
        self._queued_texts += len(texts)
        assert self._wakeup is not None
        self._wakeup.set()
        return await pending.future

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._queued_texts < self.max_batch and self.max_wait_s > 0 and len(self._queue) > 1:
                # several callers are arriving at once: give stragglers a moment to join this batch
                await asyncio.sleep(self.max_wait_s)
            batch = self._take()
            texts = [t for p in batch for t in p.texts]
            started = time.perf_counter()
            links = [trace.Link(p.span) for p in batch if p.span.is_valid]
            try:
                with span_of(self._tracer, f"batch {self._name}", links=links) as span:
                    span.set_attribute("deskpilot.batch_size", len(texts))
                    span.set_attribute("deskpilot.requests", len(batch))
                    context = trace.set_span_in_context(span)
                    probs, meta = await loop.run_in_executor(self._executor, self._traced, texts, context)
            except asyncio.CancelledError:  # close(): this batch left the queue, so answer it here
                _fail(batch, RuntimeError("the service is shutting down"))
                raise
            except Exception as exc:  # the model's failure belongs to the callers, not to the worker
                _fail(batch, exc)
                continue
            if self._on_batch is not None:
                self._on_batch(len(texts), time.perf_counter() - started)
            offset = 0
            for pending in batch:
                rows = probs[offset : offset + len(pending.texts)]
                offset += len(pending.texts)
                if not pending.future.done():  # a caller that timed out has moved on
                    pending.future.set_result((rows, meta))

    def _traced(self, texts: list[str], context: Context) -> tuple[np.ndarray, Meta]:
        with span_of(self._tracer, f"model {self._name}", context=context):
            return self._predict(texts)

    def _take(self) -> list[_Pending[Meta]]:
        """Whole requests, oldest first, up to ``max_batch`` texts (a larger request goes alone)."""
        batch: list[_Pending[Meta]] = []
        size = 0
        while self._queue:
            head = self._queue[0]
            if batch and size + len(head.texts) > self.max_batch:
                break
            batch.append(self._queue.popleft())
            size += len(head.texts)
        self._queued_texts -= size
        return batch

    async def close(self) -> None:
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        _fail(self._queue, RuntimeError("the service is shutting down"))
        self._queue.clear()
        self._queued_texts = 0
        self._executor.shutdown(wait=False, cancel_futures=True)


def _fail(callers: Sequence[_Pending[Meta]], error: Exception) -> None:
    for pending in callers:
        if not pending.future.done():
            pending.future.set_exception(error)
