"""Adaptive micro-batching: concurrent requests share one model call, and a lone request never waits.

Requests queue texts and await a future. One worker task takes queued requests (up to ``max_batch`` texts),
runs a single ``predict_proba`` on a dedicated thread (the event loop stays free to accept requests), and
answers each request with its rows. While the model runs, new requests queue up, so batches grow with load
by themselves. ``max_wait_ms`` optionally holds a batch open a little longer when it is not yet full and
something is already in flight elsewhere; with no other traffic, a request is predicted at once.

Admission and fairness (the queue is the one place all tenants meet):

* **Fair order.** Each tenant has its own queue; a batch takes whole requests from the tenants in turn, and a
  tenant whose queue was empty goes first. A large request can be queued in parts of ``max_batch`` texts
  (``whole=False``). A tenant with a backlog therefore delays another tenant's request by about one model
  call of at most ``max_batch`` texts, not by its whole backlog.
* **Bounded queue.** A caller may pass ``max_queued_chars``: the characters waiting for the model (the cost
  of a text grows with its length) may not exceed it. When a request does not fit, the newest requests of the
  tenant holding the most queued characters are dropped to make room, as long as that tenant holds more than
  the newcomer's tenant would; otherwise the newcomer is refused. Both get :class:`OverloadedError` (503).
* **Bounded wait.** Once large batches have shown the model's pace (characters per second), a request that
  could not be done within half its caller's budget, given what its tenant and the others have queued, is
  refused at once (503) instead of taking model time it would waste: the budget is the limit in model time.
  An empty queue takes any request (which also keeps the pace measured).
* **Nothing abandoned is computed.** A request whose caller gave up (its ``timeout_s`` ran out, or its task
  was cancelled because the client went away) leaves the queue at once. When the budget runs out while the
  request still waits and the model is making progress, the service is overloaded: the caller gets
  :class:`OverloadedError` rather than a plain timeout, so that it is not sent to the next model in line to
  queue again. A model stuck in one call for longer than the budget is a model problem: ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from opentelemetry import trace
from opentelemetry.context import Context

from deskpilot.errors import OverloadedError
from deskpilot.service.observability import span as span_of

Meta = TypeVar("Meta")
BatchPredict = Callable[[Sequence[str]], tuple[np.ndarray, Meta]]
BatchObserver = Callable[[int, float], None]  # batch size, seconds in the model

# Reasons an OverloadedError gives in its details (and the service's ``deskpilot_shed_total`` label).
SHED_QUEUE_FULL = "queue_full"
SHED_EVICTED = "evicted"
SHED_DEADLINE = "deadline"
SHED_BACKLOG = "backlog"
_THROUGHPUT_WEIGHT = 0.2  # weight of the newest batch in the characters-per-second average
_PACE_MIN_CHARS = 8_000  # batches this large (or larger) tell the model's pace in characters per second
# Admit a request only when the queue ahead of it should be done in this share of its budget: the pace is
# measured on the model alone, while the answer also waits for the event loop and the other tenants' turns.
_BACKLOG_SHARE = 0.5
_RECOMPUTE_ROUNDS = 2  # a request's parts answered by different models are made to agree at most this often


@dataclass(eq=False)  # identity: a request is removed from its queue as itself, not as an equal one
class _Pending(Generic[Meta]):
    texts: Sequence[str]
    future: asyncio.Future[tuple[np.ndarray, Meta]]
    tenant: str = ""
    chars: int = 0
    taken: bool = False  # left the queue for a model call
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
        self._queues: OrderedDict[str, deque[_Pending[Meta]]] = OrderedDict()  # in serving order
        self._queued_texts = 0
        self._queued_requests = 0
        self._queued_chars = 0
        self._tenant_chars: dict[str, int] = {}
        self._running_since: float | None = None  # monotonic start of the model call in progress
        self._chars_per_s: float | None = None
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"deskpilot-{name}")
        self._closed = False

    @property
    def queued(self) -> int:
        """Texts waiting for the model."""
        return self._queued_texts

    @property
    def queued_chars(self) -> int:
        """Characters waiting for the model."""
        return self._queued_chars

    def refusal(
        self, tenant: str, chars: int, *, max_queued_chars: int | None, budget_s: float | None
    ) -> str | None:
        """Why a request of ``chars`` characters from ``tenant`` would be refused now (None: it would be
        admitted, dropping other tenants' newest requests if need be); lets a caller refuse before it spends
        work on the texts."""
        if self._too_slow(tenant, chars, budget_s):
            return SHED_BACKLOG
        if max_queued_chars is None or self._queued_chars + chars <= max_queued_chars:
            return None
        mine = self._tenant_chars.get(tenant, 0) + chars
        room = sum(c - mine for t, c in self._tenant_chars.items() if t != tenant and c > mine)
        return None if self._queued_chars + chars - room <= max_queued_chars else SHED_QUEUE_FULL

    def _too_slow(self, tenant: str, chars: int, budget_s: float | None) -> bool:
        """Whether, at the model's recent pace, the tenant's queued texts and these would not be done within
        :data:`_BACKLOG_SHARE` of ``budget_s``. Tenants take turns, so another tenant's backlog delays this
        one only up to the size of this tenant's own (each counts min(theirs, mine)): a light tenant is
        hardly delayed at all."""
        if budget_s is None or not self._chars_per_s or not self._queued_chars:
            return False  # an empty queue takes anything: a request alone is the budget's business
        mine = self._tenant_chars.get(tenant, 0) + chars
        ahead = mine + sum(min(held, mine) for t, held in self._tenant_chars.items() if t != tenant)
        return ahead / self._chars_per_s > budget_s * _BACKLOG_SHARE

    async def predict(
        self,
        texts: Sequence[str],
        *,
        tenant: str = "",
        timeout_s: float | None = None,
        max_queued_chars: int | None = None,
        whole: bool = True,
    ) -> tuple[np.ndarray, Meta]:
        """Probabilities for ``texts`` (and the batch's meta), computed with whatever else is waiting.

        ``timeout_s`` is the caller's budget (``TimeoutError`` or :class:`OverloadedError` when it runs out,
        see the module docstring); ``max_queued_chars`` bounds the queue this request may join. A request of
        more than ``max_batch`` texts goes to the model whole, alone, unless ``whole`` is false: then in
        parts of ``max_batch`` that take their turns like any other request, so that one large request
        delays another tenant's by one part, not by all of it. The parts' answers come from the same model
        (parts answered by a model that was replaced meanwhile are computed again by the new one).
        """
        if self._closed:
            raise RuntimeError("the batcher is closed")
        if not texts:
            raise ValueError("nothing to predict")
        self._admit(tenant, sum(len(t) for t in texts), max_queued_chars, timeout_s)
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="deskpilot-microbatcher")
        size = len(texts) if whole else self.max_batch
        parts = [texts[i : i + size] for i in range(0, len(texts), size)]
        deadline = None if timeout_s is None else loop.time() + timeout_s
        answers = await self._answer(parts, tenant, deadline, timeout_s)
        for _ in range(_RECOMPUTE_ROUNDS):
            newest = answers[-1][1]
            stale = [i for i, (_, meta) in enumerate(answers) if meta is not newest]
            if not stale:
                break
            again = await self._answer([parts[i] for i in stale], tenant, deadline, timeout_s)
            for i, answer in zip(stale, again, strict=True):
                answers[i] = answer
        if len(answers) == 1:
            return answers[0]
        return np.concatenate([probs for probs, _ in answers]), answers[-1][1]

    async def _answer(
        self, parts: list[Sequence[str]], tenant: str, deadline: float | None, budget_s: float | None
    ) -> list[tuple[np.ndarray, Meta]]:
        """Queue ``parts`` (already admitted) and wait for all of their answers until ``deadline`` (the end
        of the caller's ``budget_s``)."""
        loop = asyncio.get_running_loop()
        pendings: list[_Pending[Meta]] = [
            _Pending(part, loop.create_future(), tenant, sum(len(t) for t in part)) for part in parts
        ]
        for pending in pendings:
            self._enqueue(pending)
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            async with asyncio.timeout_at(deadline):
                return list(await asyncio.gather(*(asyncio.shield(p.future) for p in pendings)))
        except TimeoutError:
            still_queued = [self._abandon(p) for p in pendings]
            if any(still_queued) and budget_s is not None and not self._stalled(budget_s):
                raise self._overloaded(
                    SHED_DEADLINE, f"the request waited {budget_s:g}s for the {self._name} model"
                ) from None
            raise
        except BaseException:  # a part dropped for room, the model's error, or the caller gave up
            for pending in pendings:
                self._abandon(pending)
            raise

    def _admit(self, tenant: str, chars: int, cap: int | None, budget_s: float | None) -> None:
        """Make room for ``chars`` characters of ``tenant`` or refuse (see the module docstring)."""
        if self._too_slow(tenant, chars, budget_s):
            raise self._overloaded(
                SHED_BACKLOG, f"at the {self._name} model's pace this would take longer than {budget_s:g}s"
            )
        if cap is None or self._queued_chars + chars <= cap:
            return
        mine = self._tenant_chars.get(tenant, 0) + chars
        while self._queued_chars + chars > cap:
            heaviest = max(self._tenant_chars, key=self._tenant_chars.__getitem__, default=None)
            if heaviest is None or heaviest == tenant or self._tenant_chars[heaviest] <= mine:
                break
            self._abandon(
                self._queues[heaviest][-1],
                self._overloaded(SHED_EVICTED, "the queue is full and this tenant holds the largest share"),
            )
        if self._queued_chars + chars > cap:
            raise self._overloaded(SHED_QUEUE_FULL, f"the {self._name} model's queue is full")

    def _overloaded(self, reason: str, message: str) -> OverloadedError:
        return OverloadedError(
            f"{message}; retry later",
            details={"reason": reason, "retry_after_s": self.retry_after_s()},
        )

    def retry_after_s(self) -> int:
        """Whole seconds for the queue to drain at the model's recent pace (at least 1)."""
        if not self._chars_per_s:
            return 1
        return max(1, math.ceil(self._queued_chars / self._chars_per_s))

    def _stalled(self, budget_s: float) -> bool:
        """A model call has been running for longer than ``budget_s``: the model, not the load, is slow."""
        started = self._running_since
        return started is not None and time.monotonic() - started >= budget_s

    def _enqueue(self, pending: _Pending[Meta]) -> None:
        queue = self._queues.get(pending.tenant)
        if queue is None:
            queue = self._queues[pending.tenant] = deque()
            self._queues.move_to_end(pending.tenant, last=False)  # a tenant with nothing waiting goes first
        queue.append(pending)
        self._count(pending, +1)

    def _count(self, pending: _Pending[Meta], sign: int) -> None:
        self._queued_texts += sign * len(pending.texts)
        self._queued_requests += sign
        self._queued_chars += sign * pending.chars
        if pending.tenant in self._queues:  # called after a request joins, or leaves, its tenant's queue
            self._tenant_chars[pending.tenant] = (
                self._tenant_chars.get(pending.tenant, 0) + sign * pending.chars
            )
        else:
            self._tenant_chars.pop(pending.tenant, None)

    def _abandon(self, pending: _Pending[Meta], error: Exception | None = None) -> bool:
        """Take a request out of the queue (if it is still there) and answer it with ``error`` (none: it is
        cancelled, nobody waits for it any more); True when it was still queued."""
        queued = False
        queue = self._queues.get(pending.tenant)
        if not pending.taken and queue is not None and pending in queue:
            queue.remove(pending)
            if not queue:
                del self._queues[pending.tenant]
            self._count(pending, -1)
            queued = True
        if not pending.future.done():
            if error is None:
                pending.future.cancel()
            else:
                pending.future.set_exception(error)
        return queued

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._queued_requests:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._queued_texts < self.max_batch and self.max_wait_s > 0 and self._queued_requests > 1:
                # several callers are arriving at once: give stragglers a moment to join this batch
                await asyncio.sleep(self.max_wait_s)
            batch = self._take()
            if not batch:
                continue
            texts = [t for p in batch for t in p.texts]
            started = time.perf_counter()
            self._running_since = time.monotonic()
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
            finally:
                self._running_since = None
            seconds = time.perf_counter() - started
            self._observe_pace(sum(p.chars for p in batch), seconds)
            if self._on_batch is not None:
                self._on_batch(len(texts), seconds)
            offset = 0
            for pending in batch:
                rows = probs[offset : offset + len(pending.texts)]
                offset += len(pending.texts)
                if not pending.future.done():  # a caller that timed out has moved on
                    pending.future.set_result((rows, meta))

    def _observe_pace(self, chars: int, seconds: float) -> None:
        if seconds <= 0 or chars < _PACE_MIN_CHARS:  # a small batch's pace is mostly per-call overhead
            return
        pace = chars / seconds
        previous = self._chars_per_s
        self._chars_per_s = pace if previous is None else previous + _THROUGHPUT_WEIGHT * (pace - previous)

    def _traced(self, texts: list[str], context: Context) -> tuple[np.ndarray, Meta]:
        with span_of(self._tracer, f"model {self._name}", context=context):
            return self._predict(texts)

    def _take(self) -> list[_Pending[Meta]]:
        """Whole requests up to ``max_batch`` texts, one tenant's oldest at a time in turn (a request larger
        than ``max_batch`` goes alone); a served tenant moves to the back of the turn."""
        batch: list[_Pending[Meta]] = []
        size = 0
        progressed = True
        while progressed and self._queues and size < self.max_batch:
            progressed = False
            for tenant in list(self._queues):
                queue = self._queues[tenant]
                head = queue[0]
                if batch and size + len(head.texts) > self.max_batch:
                    continue
                queue.popleft()
                if queue:
                    self._queues.move_to_end(tenant)
                else:
                    del self._queues[tenant]
                self._count(head, -1)
                head.taken = True
                if head.future.done():  # abandoned between its cancellation and now
                    continue
                batch.append(head)
                size += len(head.texts)
                progressed = True
                if size >= self.max_batch:
                    break
        return batch

    async def close(self) -> None:
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        queued = [p for queue in self._queues.values() for p in queue]
        _fail(queued, RuntimeError("the service is shutting down"))
        self._queues.clear()
        self._tenant_chars.clear()
        self._queued_texts = self._queued_requests = self._queued_chars = 0
        self._executor.shutdown(wait=False, cancel_futures=True)


def _fail(callers: Sequence[_Pending[Meta]], error: Exception) -> None:
    for pending in callers:
        if not pending.future.done():
            pending.future.set_exception(error)
