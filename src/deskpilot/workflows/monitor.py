"""``deskpilot monitor`` and the service's monitor task: watch a model version's logged decisions against the
reference profile it was trained with.

A run reads [since, until) from the store (by default the last day), computes every signal overall and per
tenant, records each window in ``monitor_runs``, and optionally writes the report and a Prometheus text
file. The service's task does the same every ``monitor_interval_s`` over the last ``monitor_window_s`` and
exports the gauges on ``/metrics``; one server process runs it (a lock file under home), the others skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from deskpilot.config import Settings
from deskpilot.domain import ModelRef
from deskpilot.errors import ModelNotFoundError, NoReferenceProfileError, UsageError
from deskpilot.models.artifact import TriageModel
from deskpilot.monitoring.metrics import MonitorMetrics
from deskpilot.monitoring.profile import Embedder, ReferenceProfile
from deskpilot.monitoring.result import MonitorResult
from deskpilot.monitoring.run import MonitorConfig, run_monitor
from deskpilot.monitoring.window import WindowPlan
from deskpilot.registry.base import CHAMPION, ModelRegistry
from deskpilot.store.base import DecisionStore
from deskpilot.store.records import MonitorRunRecord, utc_now
from deskpilot.workflows.build import build_registry, existing_store_url, parse_model_uri, writable_store_url

logger = logging.getLogger(__name__)

DEFAULT_RANGE = timedelta(days=1)
HISTORY_RUNS = 500  # stored runs the report's plots over time read back


@dataclass(frozen=True)
class MonitorRequest:
    since: datetime | None = None
    until: datetime | None = None
    tenant: str | None = None
    model_uri: str | None = None  # default: the champion of settings.model_name
    every: timedelta | None = None
    count: int | None = None
    per_tenant: bool = True
    report_dir: Path | None = None
    textfile: Path | None = None
    record: bool = True
    config: MonitorConfig = field(default_factory=MonitorConfig)

    def plan(self, now: datetime) -> WindowPlan:
        if self.every is not None and self.count is not None:
            raise UsageError("--window is either a duration or a number of decisions, not both")
        until = self.until or now
        since = self.since or until - DEFAULT_RANGE
        try:
            return WindowPlan(since=since, until=until, every=self.every, count=self.count)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc


@dataclass(frozen=True)
class MonitorOutcome:
    result: MonitorResult
    run_ids: list[int]
    files: tuple[Path, Path] | None


@dataclass(frozen=True)
class WatchedModel:
    ref: ModelRef
    model: TriageModel
    profile: ReferenceProfile

    @property
    def embedder(self) -> Embedder | None:
        classifier = self.model.classifier
        return classifier if isinstance(classifier, Embedder) else None


def watched_model(settings: Settings, model_uri: str | None, registry: ModelRegistry) -> WatchedModel:
    """The version to watch (a URI, or the champion), loaded with its reference profile."""
    if model_uri is None:
        version = registry.alias_version(settings.model_name, CHAMPION)
        if version is None:
            raise ModelNotFoundError(
                f"{settings.model_name} has no champion to monitor; pass --model models:/NAME/VERSION",
                details={"model": settings.model_name},
            )
        ref = ModelRef(settings.model_name, version=version)
    else:
        ref = parse_model_uri(model_uri)
        if ref.version is None:
            found = registry.alias_version(ref.name, ref.alias or "")
            if found is None:
                raise ModelNotFoundError(f"{ref.uri}: no version has this alias", details={"model": ref.uri})
            ref = ModelRef(ref.name, version=found)
    model = registry.load(ref)
    if model.reference is None:
        raise NoReferenceProfileError(
            f"{ref.uri} was trained before models kept a reference profile: nothing to compare its "
            "decisions with. Retrain it (deskpilot train) to monitor it.",
            details={"model": ref.uri},
        )
    return WatchedModel(ref, model, ReferenceProfile.from_dict(model.reference))


def run(
    settings: Settings,
    request: MonitorRequest,
    *,
    registry: ModelRegistry | None = None,
    store: DecisionStore | None = None,
    watched: WatchedModel | None = None,
) -> MonitorOutcome:
    """One monitor run as ``deskpilot monitor`` makes it; the caller decides the exit status."""
    plan = request.plan(utc_now())
    watched = watched or watched_model(settings, request.model_uri, registry or build_registry(settings))
    own_store = store is None
    if store is None:
        from deskpilot.store.sql import SqlStore

        existing_store_url(settings, "no decision was logged yet (run deskpilot serve)")
        store = SqlStore(writable_store_url(settings))
    try:
        result = run_monitor(
            store,
            watched.profile,
            plan,
            model_name=watched.ref.name,
            model_version=watched.ref.version or "",
            tenant=request.tenant,
            per_tenant=request.per_tenant,
            embedder=watched.embedder,
            config=request.config,
        )
        run_ids = [store.add_monitor_run(record) for record in run_records(result)] if request.record else []
        files = None
        if request.report_dir is not None:
            from deskpilot.monitoring.report import write_monitor_report  # Jinja, matplotlib: on use

            history = store.monitor_runs(HISTORY_RUNS, model_name=watched.ref.name, overall=True)
            files = write_monitor_report(result, history, request.report_dir)
    finally:
        if own_store:
            store.close()
    if request.textfile is not None:
        metrics = MonitorMetrics()
        metrics.update(result)
        metrics.write_textfile(request.textfile)
    return MonitorOutcome(result, run_ids, files)


def run_records(result: MonitorResult) -> list[MonitorRunRecord]:
    """One stored row per window and scope, each with the run's model and range."""
    return [
        MonitorRunRecord(
            started_at=result.started_at,
            finished_at=result.finished_at,
            since=window.start,
            until=window.end,
            tenant=window.tenant,
            model_name=result.model_name,
            model_version=result.model_version,
            decisions=window.decisions,
            fired=bool(window.fired),
            result={"alpha": result.alpha, **window.to_dict()},
        )
        for window in result.windows
    ]


class MonitorTask:
    """The monitor inside a server process: a run every ``interval_s`` over the last ``window``."""

    def __init__(
        self,
        settings: Settings,
        store: DecisionStore,
        metrics: MonitorMetrics,
        registry: ModelRegistry,
        *,
        interval_s: float,
        window: timedelta,
    ) -> None:
        self._settings = settings
        self._store = store
        self._registry = registry
        self._metrics = metrics
        self._interval_s = interval_s
        self._window = window
        self._task: asyncio.Task[None] | None = None
        self._leader = Leadership(settings.home / "monitor.lock")
        self.last: MonitorOutcome | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="deskpilot-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._leader.release()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.run_once()

    async def run_once(self) -> None:
        """One run; a failure is logged and counted (the gauges keep the last good run), never raised."""
        if not self._leader.holds():
            return
        try:
            request = MonitorRequest(since=utc_now() - self._window)
            self.last = await asyncio.to_thread(
                run, self._settings, request, registry=self._registry, store=self._store
            )
            self._metrics.update(self.last.result)
        except Exception:
            self._metrics.failures.inc()
            logger.exception("the monitor run failed")


class Leadership:
    """Which server process runs the monitor: the one holding an exclusive lock on a file under home.

    The first process to ask keeps the lock for its lifetime; when it exits the kernel releases it and the
    next process to ask takes over, so several workers make one run per interval, not one each.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._descriptor: int | None = None

    def holds(self) -> bool:
        if self._descriptor is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._descriptor = descriptor
        return True

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor drops the lock
            self._descriptor = None


async def start_monitor(
    settings: Settings, store: DecisionStore, metrics: MonitorMetrics, registry: ModelRegistry
) -> MonitorTask | None:
    """The running monitor task of a server process, or ``None`` when ``monitor_interval_s`` is not set."""
    if settings.monitor_interval_s is None:
        return None
    task = MonitorTask(
        settings,
        store,
        metrics,
        registry,
        interval_s=settings.monitor_interval_s,
        window=timedelta(seconds=settings.monitor_window_s),
    )
    await task.start()
    return task
