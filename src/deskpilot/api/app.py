"""``create_app(settings)``: the composition root of the HTTP service.

Everything is built here from settings and passed down; nothing happens at import. The lifespan loads the
models, migrates a local SQLite store, starts the registry watcher and the store writer, and stops them all
on shutdown. Tests pass their own registry or store (real ones in a temp folder, or fakes for unit tests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter

from deskpilot import __version__
from deskpilot.api.deps import AppParts, RequestLimits
from deskpilot.api.errors import install_error_handlers
from deskpilot.api.middleware import BodyGuard, RequestContext
from deskpilot.api.routes import feedback, ops, triage
from deskpilot.config import Settings
from deskpilot.evaluation.policy import RolloutRules, load_policy
from deskpilot.registry.base import ModelRegistry
from deskpilot.registry.mlflow_registry import MlflowRegistry
from deskpilot.rollout.actions import ramp, rollback
from deskpilot.rollout.monitor import RolloutMonitor
from deskpilot.service.guard import RolloutGuard
from deskpilot.service.keys import KeyRing
from deskpilot.service.metrics import ServiceMetrics
from deskpilot.service.models import ModelManager, ModelWatcher
from deskpilot.service.observability import build_tracer
from deskpilot.service.ratelimit import TokenBucketLimiter
from deskpilot.service.triage import ServiceLimits, TriageService
from deskpilot.store import migrate
from deskpilot.store.audit import AuditLog
from deskpilot.store.audit_sql import SqlAuditLog
from deskpilot.store.base import DecisionStore
from deskpilot.store.sql import SqlStore
from deskpilot.store.writer import BufferedWriter, ShadowWriter

logger = logging.getLogger(__name__)
SERVICE_ACTOR = "deskpilot-service"

DESCRIPTION = """Triage support messages: intent, calibrated confidence, and whether the ticket can be routed
automatically (`auto`) or needs a person (`human`). Authenticate with `Authorization: Bearer <key>`; every
error is `{"error": {"code", "message", "details"}}` with a stable code."""


@dataclass
class Overrides:
    """Parts a caller (a test, an embedding program) supplies instead of building them from settings."""

    registry: ModelRegistry | None = None
    store: DecisionStore | None = None
    audit: AuditLog | None = None
    keys: KeyRing | None = None
    span_exporter: list[SpanExporter] = field(default_factory=list)  # filled with the exporter in use


def create_app(settings: Settings, overrides: Overrides | None = None) -> FastAPI:
    given = overrides or Overrides()
    rules = load_policy(settings.policy_file).rollout  # a bad policy fails before the server starts
    keys = given.keys or KeyRing(settings.keys_file, settings.api_keys)  # so does a malformed key
    limiter = worker_share_limiter(settings)  # built here so a bad setting fails before the server starts
    metrics = ServiceMetrics()
    tracer, exporter = build_tracer(settings.tracing)
    if exporter is not None:
        given.span_exporter.append(exporter)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts, watcher, guard = await _start(settings, given, metrics, tracer, limiter, rules, keys)
        app.state.parts = parts
        try:
            yield
        finally:
            await guard.stop()
            watcher.stop()
            await parts.service.close()
            metrics.process_exited()

    app = FastAPI(
        title="DeskPilot triage API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(triage.router)
    app.include_router(feedback.router)
    app.include_router(ops.router)
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext, metrics=metrics, tracer=tracer)
    return app


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


async def _start(
    settings: Settings,
    given: Overrides,
    metrics: ServiceMetrics,
    tracer: trace.Tracer,
    limiter: TokenBucketLimiter,
    rules: RolloutRules,
    keys: KeyRing,
) -> tuple[AppParts, ModelWatcher, RolloutGuard]:
    registry = given.registry or MlflowRegistry(
        settings.resolved_tracking_uri,
        artifact_root=settings.artifact_root,
        cache_dir=settings.model_cache_dir,
    )
    url = settings.resolved_database_url
    if url.startswith("sqlite") and (given.store is None or given.audit is None):
        await asyncio.to_thread(migrate.upgrade, url)  # a local file: create or update it in place
    store = given.store or SqlStore(url)
    audit = given.audit or SqlAuditLog(url)
    writer = BufferedWriter(
        store,
        max_buffer=settings.store_buffer,
        on_drop=metrics.store_dropped.inc,
        on_depth=metrics.store_queue_depth.set,
        logger=logging.getLogger("deskpilot.store"),
    )
    shadow_writer = ShadowWriter(
        store,
        max_buffer=settings.store_buffer,
        on_drop=metrics.shadow_log_dropped.inc,
        logger=logging.getLogger("deskpilot.store"),
    )

    def on_model_event(event: str, role: str, detail: str) -> None:
        if event == "load_failed":
            metrics.model_load_failures.labels(role).inc()
            return
        loaded = manager.primary if role == "primary" else manager.fallback
        if loaded is not None:
            metrics.set_model(role, loaded.name, loaded.version, loaded.family)

    manager = ModelManager(registry, settings.model_name, on_event=on_model_event)
    await asyncio.to_thread(manager.refresh)
    watcher = ModelWatcher(manager, settings.reload_interval_s)
    watcher.start()
    monitor = RolloutMonitor(window_s=rules.window_s)
    service = TriageService(
        manager,
        monitor=monitor,
        store=store,
        writer=writer,
        shadow_writer=shadow_writer,
        metrics=metrics,
        limits=ServiceLimits(
            max_batch=settings.micro_batch_max,
            max_wait_ms=settings.micro_batch_wait_ms,
            model_timeout_s=settings.model_timeout_s,
        ),
        tracer=tracer,
    )
    await service.start()
    name = settings.model_name
    guard = RolloutGuard(
        manager,
        monitor,
        rules,
        metrics,
        rollback=lambda reason: rollback(
            registry, audit, name, actor=SERVICE_ACTOR, reason=reason, automatic=True
        ),
        ramp=lambda percent: ramp(
            registry, audit, name, percent=percent, actor=SERVICE_ACTOR, reason="every rollback rule held"
        ),
        on_new_challenger=service.forget_shadow,
        interval_s=settings.guard_interval_s,
    )
    guard.start()
    parts = AppParts(
        service=service,
        keys=keys,
        limiter=limiter,
        metrics=metrics,
        limits=RequestLimits(
            max_text_length=settings.max_text_length, max_batch_items=settings.max_batch_items
        ),
    )
    return parts, watcher, guard
