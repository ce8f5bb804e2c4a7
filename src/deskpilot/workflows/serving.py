"""Assemble the triage service from settings: everything the HTTP app serves with, and no web framework.

:class:`ServingStack` is built in two steps. Construction reads and checks what can be wrong in the settings
(policy file, keys, limits, tracing), so a bad setting fails before a server starts; :meth:`start` (on the
running event loop) migrates a local SQLite store, loads the models, starts the registry watcher, the store
writers and the rollout guard; :meth:`stop` stops them all. Tests pass their own registry, store, audit log
or key ring through :class:`Overrides` (real ones in a temp folder, or fakes).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from opentelemetry.sdk.trace.export import SpanExporter

from deskpilot.config import Settings
from deskpilot.copilot.gateway.router import Gateway
from deskpilot.copilot.prompts import load_template
from deskpilot.data.pii import PiiRedactor
from deskpilot.domain import Role
from deskpilot.errors import ConfigError
from deskpilot.monitoring.metrics import MonitorMetrics
from deskpilot.registry.base import ModelRegistry
from deskpilot.rollout import actions
from deskpilot.rollout.guard import RolloutGuard
from deskpilot.rollout.monitor import RolloutMonitor
from deskpilot.rollout.state import RolloutState
from deskpilot.service.copilot import CopilotService, EncoderLimits, IndexHolder
from deskpilot.service.copilot_metrics import CopilotMetrics, GatewayMetrics
from deskpilot.service.keys import KeyRing
from deskpilot.service.metrics import ServiceMetrics
from deskpilot.service.models import LOAD_FAILED, LoadedModel, ModelManager, ModelWatcher, Poller
from deskpilot.service.observability import build_tracer
from deskpilot.service.ratelimit import TokenBucketLimiter
from deskpilot.service.triage import ServiceLimits, TriageService
from deskpilot.store.audit import AuditAction, AuditLog
from deskpilot.store.base import DecisionStore
from deskpilot.store.knowledge import KnowledgeStore
from deskpilot.store.sessions import SessionStore
from deskpilot.store.writer import BufferedWriter, ShadowWriter
from deskpilot.workflows.audit import PENDING_FILE, AuditRecorder, PendingEntries, audit_seal
from deskpilot.workflows.build import load_policies, writable_store_url
from deskpilot.workflows.copilot import build_copilot, gateway_config
from deskpilot.workflows.monitor import MonitorTask, start_monitor
from deskpilot.workflows.retention import RetentionTask, start_retention

SERVICE_ACTOR = "deskpilot-service"
PENDING_GAUGE_INTERVAL_S = 5.0
logger = logging.getLogger(__name__)


@dataclass
class Overrides:
    """Parts a caller (a test, an embedding program) supplies instead of building them from settings."""

    registry: ModelRegistry | None = None
    store: DecisionStore | None = None
    audit: AuditLog | None = None
    keys: KeyRing | None = None
    knowledge: KnowledgeStore | None = None
    sessions: SessionStore | None = None
    span_exporter: list[SpanExporter] = field(default_factory=list)  # filled with the exporter in use


@dataclass(frozen=True)
class RequestLimits:
    max_text_length: int
    max_batch_items: int


def worker_share_limiter(settings: Settings) -> TokenBucketLimiter:
    """Token buckets for this process: with N workers, each enforces 1/N of every tenant's rate and burst.

    Connections spread over the workers about evenly, so the tenant's total stays near its limit without a
    shared counter; a tenant whose traffic all lands on one worker is held to that worker's share.
    """
    n = settings.workers

    def share(rate: float, burst: int) -> tuple[float, int]:
        return rate / n, -(-burst // n)  # ceiling: a positive burst never rounds down to nothing

    overrides = {tenant: share(*limit) for tenant, limit in settings.tenant_rate_limits.items()}
    return TokenBucketLimiter(
        *share(settings.rate_limit_per_s, settings.rate_limit_burst), overrides=overrides
    )


class ServingStack:
    """The triage service and everything around it for one server process."""

    def __init__(self, settings: Settings, overrides: Overrides | None = None) -> None:
        self.settings = settings
        self._given = overrides or Overrides()
        self.rules = load_policies(settings.policy_file).rollout
        self.keys = self._given.keys or KeyRing(settings.keys_file, settings.api_keys)
        self.limiter = worker_share_limiter(settings)
        self.limits = RequestLimits(
            max_text_length=settings.max_text_length, max_batch_items=settings.max_batch_items
        )
        largest = settings.max_batch_items * settings.max_text_length
        if settings.queue_max_chars < largest:
            raise ConfigError(
                f"DESKPILOT_QUEUE_MAX_CHARS ({settings.queue_max_chars:,}) is below the largest batch the "
                f"API accepts ({settings.max_batch_items} x {settings.max_text_length} = {largest:,} "
                "characters): such a batch would be refused as overloaded forever"
            )
        self.redactor = PiiRedactor()  # the service's texts and ticket ids, and the callers' request ids
        self.metrics = ServiceMetrics()
        self.copilot_metrics = CopilotMetrics(self.metrics.registry)
        load_template(settings.copilot_template)  # a bad template or LLM setting fails here, before serving
        gateway_config(settings)
        self.tracer, exporter = build_tracer(settings.tracing)
        if exporter is not None:
            self._given.span_exporter.append(exporter)
        self._service: TriageService | None = None
        self._copilot: CopilotService | None = None
        self._gateway: Gateway | None = None
        self._index_holder: IndexHolder | None = None
        self._index_watcher: Poller | None = None
        self._own_knowledge: KnowledgeStore | None = None
        self._store: DecisionStore | None = None
        self._registry: ModelRegistry | None = None
        self._sessions: SessionStore | None = None
        self._own_sessions: SessionStore | None = None
        self._audit_log: AuditLog | None = None
        self._pending: PendingEntries | None = None
        self._watcher: ModelWatcher | None = None
        self._guard: RolloutGuard | None = None
        self._audit: AuditRecorder | None = None
        self._own_audit: AuditLog | None = None
        self._retention: RetentionTask | None = None
        self.monitor_task: MonitorTask | None = None
        self._pending_gauge: asyncio.Task[None] | None = None
        self.pending_gauge_interval_s = PENDING_GAUGE_INTERVAL_S

    @property
    def service(self) -> TriageService:
        if self._service is None:
            raise RuntimeError("ServingStack.start() was not awaited")
        return self._service

    @property
    def copilot(self) -> CopilotService:
        if self._copilot is None:
            raise RuntimeError("ServingStack.start() was not awaited")
        return self._copilot

    @property
    def store(self) -> DecisionStore:
        """The decision store the service logs to (the console reads its queue from it)."""
        if self._store is None:
            raise RuntimeError("ServingStack.start() was not awaited")
        return self._store

    @property
    def knowledge(self) -> KnowledgeStore:
        """The copilot's store: knowledge items, suggestions and their verdicts."""
        knowledge = self._given.knowledge or self._own_knowledge
        if knowledge is None:
            raise RuntimeError("ServingStack.start() was not awaited")
        return knowledge

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            raise RuntimeError("ServingStack.start() was not awaited")
        return self._registry

    @property
    def sessions(self) -> SessionStore:
        """The console's sign-in sessions, in the decisions' database."""
        if self._sessions is None:
            raise RuntimeError("ServingStack.start() was not awaited")
        return self._sessions

    def audit_recorder(self, actor: str) -> AuditRecorder:
        """An :class:`AuditRecorder` on the server's audit log that records as ``actor`` (a console user)."""
        if self._audit_log is None:
            raise RuntimeError("ServingStack.start() was not awaited")
        return self._recorder(self._audit_log, actor)

    def _recorder(self, audit_log: AuditLog, actor: str) -> AuditRecorder:
        """A recorder that queues entries the store cannot take now, logs that, and counts what is lost."""
        return AuditRecorder(
            audit_log,
            pending=self._pending,
            actor=actor,
            on_queued=lambda receipt, why: logger.warning(
                "audit entry queued until the store is reachable: %s (%s)", receipt.describe(), why
            ),
            on_unwritten=lambda action: self.metrics.audit_write_failures.labels(action).inc(),
        )

    async def start(self) -> None:
        settings, given = self.settings, self._given
        registry = given.registry or _registry(settings)
        self._registry = registry
        url = settings.resolved_database_url
        if given.store is None or given.audit is None or given.sessions is None:
            url = await asyncio.to_thread(writable_store_url, settings)  # a local SQLite file is migrated
        store = given.store or _store(url)
        self._store = store
        self._own_sessions = None if given.sessions is not None else _sessions(url)
        self._sessions = given.sessions or self._own_sessions
        self._own_audit = None if given.audit is not None else _audit_log(url)
        audit_log = given.audit or self._own_audit
        assert audit_log is not None
        audit_log.use_seal(audit_seal(settings, create_key=True))  # sign appends, record heads (ADR 0011)
        self._audit_log = audit_log
        pending = PendingEntries(settings.home / PENDING_FILE)
        self._pending = pending
        self._audit = self._recorder(audit_log, SERVICE_ACTOR)
        manager = ModelManager(registry, settings.model_name, on_event=self._on_model_event)
        await asyncio.to_thread(manager.refresh)
        self._watcher = ModelWatcher(manager, settings.reload_interval_s)
        self._watcher.start()
        monitor = RolloutMonitor(window_s=self.rules.window_s)
        self._service = TriageService(
            manager,
            monitor=monitor,
            store=store,
            writer=self._decision_writer(store),
            shadow_writer=self._shadow_writer(store),
            metrics=self.metrics,
            redactor=self.redactor,
            limits=ServiceLimits(
                max_batch=settings.micro_batch_max,
                max_wait_ms=settings.micro_batch_wait_ms,
                model_timeout_s=settings.model_timeout_s,
                max_queued_chars=settings.queue_max_chars,
                review_sample_rate=settings.review_sample_rate,
            ),
            tracer=self.tracer,
        )
        await self._service.start()
        await self._start_copilot(url, store)
        self._guard = RolloutGuard(
            manager,
            monitor,
            self.rules,
            rollback=lambda reason, revision: self.automatic_rollback(registry, reason, revision),
            ramp=lambda percent: self.automatic_ramp(registry, percent),
            on_new_challenger=self._service.forget_shadow,
            on_rollback=lambda rule: self.metrics.rollbacks.labels(rule).inc(),
            interval_s=settings.guard_interval_s,
        )
        self._guard.start()
        self._retention = await start_retention(settings, store, self._audit)
        self.monitor_task = await start_monitor(
            settings, store, MonitorMetrics(self.metrics.registry), registry
        )
        self._pending_gauge = asyncio.get_running_loop().create_task(
            self._gauge_pending(pending), name="deskpilot-audit-pending-gauge"
        )

    async def _start_copilot(self, url: str, store: DecisionStore) -> None:
        from deskpilot.retrieval.catalog import IndexCatalog

        settings, given = self.settings, self._given
        self._own_knowledge = None if given.knowledge is not None else _knowledge(url)
        knowledge = given.knowledge or self._own_knowledge
        assert knowledge is not None
        llm = gateway_config(settings)
        providers = [] if llm is None else [p.name for p in llm.providers]
        observer = GatewayMetrics(self.copilot_metrics, providers)
        copilot, self._gateway = build_copilot(settings, self.redactor, knowledge, [observer])
        metrics = self.copilot_metrics

        def loaded(version: int) -> None:
            metrics.index_version.set(version)
            if self._copilot is not None:  # a reload: the first load is warmed below
                self._copilot.warm()

        self._index_holder = IndexHolder(
            IndexCatalog(settings.resolved_kb_dir),
            on_loaded=loaded,
            on_failed=lambda version, error: metrics.index_load_failures.inc(),
            on_unloaded=lambda: metrics.index_version.set(0),
        )
        self._index_watcher = Poller(
            self._index_holder.refresh, settings.kb_reload_interval_s, what="retrieval index"
        )
        await asyncio.to_thread(self._index_holder.refresh)
        self._copilot = CopilotService(
            triage=self.service,
            copilot=copilot,
            holder=self._index_holder,
            knowledge=knowledge,
            decisions=store,
            redactor=self.redactor,
            metrics=metrics,
            limits=EncoderLimits(
                max_batch=settings.micro_batch_max,
                max_wait_ms=settings.micro_batch_wait_ms,
                timeout_s=settings.model_timeout_s,
                max_queued_chars=settings.queue_max_chars,
            ),
        )
        await self._copilot.start()
        await asyncio.to_thread(self._copilot.warm)
        self._index_watcher.start()

    async def stop(self) -> None:
        if self._copilot is not None:
            await self._copilot.close()
        if self._index_watcher is not None:
            self._index_watcher.stop()
        if self._gateway is not None:
            await self._gateway.aclose()
        if self._own_knowledge is not None:
            self._own_knowledge.close()
        if self.monitor_task is not None:
            await self.monitor_task.stop()
        if self._pending_gauge is not None:
            self._pending_gauge.cancel()
            await asyncio.gather(self._pending_gauge, return_exceptions=True)
        if self._retention is not None:
            await self._retention.stop()
        if self._guard is not None:
            await self._guard.stop()
        if self._watcher is not None:
            self._watcher.stop()
        if self._service is not None:
            await self._service.close()
        if self._own_audit is not None:
            self._own_audit.close()  # a log the caller handed in is the caller's to close
        if self._own_sessions is not None:
            self._own_sessions.close()
        self.metrics.process_exited()

    async def _gauge_pending(self, pending: PendingEntries) -> None:
        """Keep ``deskpilot_audit_pending_entries`` current from the file itself: the other processes of
        this home (workers, commands) queue and drain it too."""
        while True:
            try:
                self.metrics.audit_pending.set(await asyncio.to_thread(pending.peek))
            except (OSError, ValueError) as error:
                logger.warning("cannot count the queued audit entries: %s", error)
            await asyncio.sleep(self.pending_gauge_interval_s)

    def _on_model_event(self, event: str, role: Role, loaded: LoadedModel | None, detail: str) -> None:
        if event == LOAD_FAILED:
            self.metrics.model_load_failures.labels(role).inc()
        elif loaded is not None:
            self.metrics.set_model(role, loaded.name, loaded.version, loaded.family)

    def automatic_rollback(
        self, registry: ModelRegistry, reason: str, expected_revision: int | None = None
    ) -> RolloutState:
        """The guard's rollback: written through the registry, audited as ``auto_rollback`` (deferrable);
        a conflict when the state is no longer the revision the guard judged (a replica was first)."""
        if self._audit is None:
            raise RuntimeError("ServingStack.start() was not awaited")
        name = self.settings.model_name
        return actions.rollback(
            registry,
            self._audit,
            name,
            actor=SERVICE_ACTOR,
            reason=reason,
            automatic=True,
            expected_revision=expected_revision,
        )

    def automatic_ramp(self, registry: ModelRegistry, percent: float) -> RolloutState:
        """The guard's canary ramp, audited as ``ramp``: not deferrable, so no ramp while the store that
        would keep its entry is unreachable (the guard tries again at its next check)."""
        if self._audit is None:
            raise RuntimeError("ServingStack.start() was not awaited")
        self._audit.ready(AuditAction.RAMP)
        name, reason = self.settings.model_name, "every rollback rule held"
        return actions.ramp(registry, self._audit, name, percent=percent, actor=SERVICE_ACTOR, reason=reason)

    def _decision_writer(self, store: DecisionStore) -> BufferedWriter:
        return BufferedWriter(
            store,
            max_buffer=self.settings.store_buffer,
            on_drop=self.metrics.store_dropped.inc,
            on_depth=self.metrics.store_queue_depth.set,
            logger=logging.getLogger("deskpilot.store"),
        )

    def _shadow_writer(self, store: DecisionStore) -> ShadowWriter:
        return ShadowWriter(
            store,
            max_buffer=self.settings.store_buffer,
            on_drop=self.metrics.shadow_log_dropped.inc,
            logger=logging.getLogger("deskpilot.store"),
        )


def _registry(settings: Settings) -> ModelRegistry:
    from deskpilot.registry.mlflow_registry import MlflowRegistry

    return MlflowRegistry(
        settings.resolved_tracking_uri,
        artifact_root=settings.artifact_root,
        cache_dir=settings.model_cache_dir,
    )


def _store(url: str) -> DecisionStore:
    from deskpilot.store.sql import SqlStore

    return SqlStore(url)


def _knowledge(url: str) -> KnowledgeStore:
    from deskpilot.store.knowledge_sql import SqlKnowledgeStore

    return SqlKnowledgeStore(url)


def _sessions(url: str) -> SessionStore:
    from deskpilot.store.sessions_sql import SqlSessionStore

    return SqlSessionStore(url)


def _audit_log(url: str) -> AuditLog:
    from deskpilot.store.audit_sql import SqlAuditLog

    return SqlAuditLog(url)
