"""Write decisions (and shadow answers) in the background, in batches, so that neither a slow nor a lost
store fails a request.

A daemon thread (not an asyncio task: it must keep flushing whatever loop, or none, the caller runs)
takes batches from a bounded buffer. While the store is down the batch in hand is retried with
exponential backoff and new records queue behind it; when the buffer is full the *new* record is dropped,
so that what is kept stays a gap-free prefix of the log that is written once the store returns.

:class:`BatchWriter` is that machinery for any record type; a subclass names the store method a batch goes
through: :class:`BufferedWriter` for decisions, :class:`ShadowWriter` for a shadow challenger's answers.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

from deskpilot.errors import StoreError
from deskpilot.store.base import DecisionStore
from deskpilot.store.records import DecisionRecord, ShadowRecord

_log = logging.getLogger(__name__)
R = TypeVar("R")


class BatchWriter(ABC, Generic[R]):
    LOG: ClassVar[str] = "decision log"  # what the log lines call this writer
    NOUN: ClassVar[str] = "decisions"  # what they call its records

    def __init__(
        self,
        store: DecisionStore,
        *,
        max_buffer: int = 10_000,
        batch_size: int = 256,
        flush_interval_s: float = 0.05,
        retry_backoff_s: tuple[float, float] = (0.1, 5.0),
        on_drop: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """``max_buffer`` bounds the records held (queued plus the batch being written); ``on_drop`` gets
        the number of records just dropped and ``on_depth`` the records held, for metrics; the backoff
        doubles from ``retry_backoff_s[0]`` up to ``retry_backoff_s[1]`` while writes fail."""
        if max_buffer < 1 or batch_size < 1 or not 0 < retry_backoff_s[0] <= retry_backoff_s[1]:
            raise ValueError("max_buffer and batch_size must be >= 1 and 0 < backoff start <= backoff cap")
        self._store = store
        self._max_buffer = max_buffer
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._backoff = retry_backoff_s
        self._on_drop = on_drop
        self._on_depth = on_depth
        self._log = logger or _log
        self._cond = threading.Condition()
        self._queue: deque[R] = deque()
        self._in_flight = 0
        self._dropped = 0
        self._burst = 0  # records dropped since the buffer last accepted one
        self._healthy = True
        self._flushers = 0  # flush() calls waiting: write now instead of waiting for a batch to fill
        self._kicks = 0  # bumped by flush() to cut a retry backoff short
        self._closing = False
        self._stopped = False
        name = f"deskpilot-{self.LOG.replace(' ', '-')}-writer"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def flush_interval_s(self) -> float:
        """The longest a record waits for its batch to fill before it is written."""
        return self._interval

    @property
    def depth(self) -> int:
        """Records accepted but not yet written."""
        with self._cond:
            return len(self._queue) + self._in_flight

    @property
    def dropped(self) -> int:
        with self._cond:
            return self._dropped

    @property
    def healthy(self) -> bool:
        """Whether the last write succeeded."""
        with self._cond:
            return self._healthy

    @property
    def capacity(self) -> int:
        """The most records held at once; at ``depth == capacity`` new records are dropped."""
        return self._max_buffer

    def writing(self, timeout: float = 1.0) -> bool:
        """Whether writes go through now: at once when the last one did; otherwise the retry backoff is cut
        short and the batch in hand gets up to ``timeout`` seconds to be written. A readiness probe asks
        this, so that a store which answers reads but refuses writes (a full disk, a held write lock, a
        read-only role) is not called ready, and one that recovered is called ready without delay."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if not self._healthy and not self._stopped:
                self._kicks += 1
                self._cond.notify_all()
                self._wait_until(deadline, lambda: self._healthy or not self._thread.is_alive())
            return self._healthy

    @abstractmethod
    def _write_batch(self, batch: list[R]) -> None:
        """Write one batch through the store (in one transaction, idempotently)."""

    def submit(self, record: R) -> bool:
        """Queue a record without blocking; ``False`` when it was dropped (buffer full or writer closed)."""
        try:
            with self._cond:
                depth = len(self._queue) + self._in_flight
                accepted = not self._closing and depth < self._max_buffer
                burst_ended, closing, first_drop = 0, self._closing, False
                if accepted:
                    burst_ended, self._burst = self._burst, 0
                    self._queue.append(record)
                    depth += 1
                    if len(self._queue) in (1, self._batch_size):  # wake an idle or a filling writer
                        self._cond.notify_all()
                else:
                    self._dropped += 1
                    self._burst += 1
                    first_drop = self._burst == 1
            if burst_ended:
                self._log.warning("%s buffer accepts again after dropping %d records", self.LOG, burst_ended)
            if not accepted:
                if first_drop:
                    why = "writer is closed" if closing else f"buffer is full ({depth} {self.NOUN})"
                    self._log.warning("%s %s: dropping new %s until it drains", self.LOG, why, self.NOUN)
                self._notify(self._on_drop, 1)
            self._notify(self._on_depth, depth)
            return accepted
        except Exception:  # never fail a triage request over its log line
            return False

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything accepted so far, retrying a failed write at once; ``True`` when nothing is
        left within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushers += 1
            self._kicks += 1
            self._cond.notify_all()
            try:
                while self._queue or self._in_flight:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if (remaining is not None and remaining <= 0) or not self._thread.is_alive():
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flushers -= 1

    def close(self, timeout: float | None = 10.0) -> bool:
        """Stop accepting, write what can be written within ``timeout``, count and log what could not."""
        with self._cond:
            self._closing = True
        drained = self.flush(timeout)
        with self._cond:
            self._stopped = True
            lost = len(self._queue) + self._in_flight
            self._dropped += lost
            self._queue.clear()
            self._in_flight = 0
            self._cond.notify_all()
        self._thread.join(timeout=max(self._backoff[1], 1.0))
        if lost:
            self._log.error("%s closed with the store unavailable: %d %s lost", self.LOG, lost, self.NOUN)
            self._notify(self._on_drop, lost)
        return drained

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._write(batch)

    def _next_batch(self) -> list[R] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            # Give a batch up to one interval to fill, unless it is full or someone waits for it.
            self._wait_until(
                time.monotonic() + self._interval,
                lambda: len(self._queue) >= self._batch_size or self._flushers > 0 or self._closing,
            )
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            self._in_flight = len(batch)
            return batch

    def _write(self, batch: list[R]) -> None:
        delay, failures = self._backoff[0], 0
        while True:
            try:
                self._write_batch(batch)
                break
            except StoreError as error:
                failures += 1
                if failures == 1:
                    self._log.warning("%s write failed, retrying with backoff: %s", self.LOG, error.message)
            except Exception:
                # A bug, not an outage: retrying would hold every later batch behind this one forever.
                self._log.exception(
                    "%s write raised unexpectedly; %d %s lost", self.LOG, len(batch), self.NOUN
                )
                with self._cond:
                    self._healthy = False
                    self._dropped += len(batch)
                    self._in_flight = 0
                    self._cond.notify_all()
                self._notify(self._on_drop, len(batch))
                return
            with self._cond:
                self._healthy = False
                self._sleep(delay)
                if self._stopped:
                    return
            delay = min(delay * 2, self._backoff[1])
        if failures:
            self._log.info("%s writes recovered after %d failed attempts", self.LOG, failures)
        with self._cond:
            self._healthy = True
            self._in_flight = 0
            depth = len(self._queue)
            self._cond.notify_all()
        self._notify(self._on_depth, depth)

    def _sleep(self, delay: float) -> None:
        """Back off (holding the condition) for ``delay``, or less if flush() or close() calls."""
        kicks = self._kicks
        self._wait_until(time.monotonic() + delay, lambda: self._kicks != kicks)

    def _wait_until(self, deadline: float, done: Callable[[], bool]) -> None:
        """Wait (holding the condition) until ``done()``, the writer stops, or ``deadline``."""
        while not (done() or self._stopped) and (remaining := deadline - time.monotonic()) > 0:
            self._cond.wait(remaining)

    def _notify(self, hook: Callable[[int], None] | None, value: int) -> None:
        if hook is None:
            return
        try:
            hook(value)
        except Exception:
            self._log.exception("%s metric hook failed", self.LOG)


class BufferedWriter(BatchWriter[DecisionRecord]):
    """The decision log's writer."""

    def _write_batch(self, batch: list[DecisionRecord]) -> None:
        self._store.write_decisions(batch)


class ShadowWriter(BatchWriter[ShadowRecord]):
    """The shadow log's writer: a challenger's answers, bounded and shed like decisions."""

    LOG = "shadow log"
    NOUN = "shadow answers"

    def _write_batch(self, batch: list[ShadowRecord]) -> None:
        self._store.write_shadow(batch)
