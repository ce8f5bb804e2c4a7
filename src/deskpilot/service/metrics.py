"""Prometheus metrics of one service instance, on its own registry (so tests can run several apps).

With several server processes (``deskpilot serve --workers N``) every process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen when that variable is set before
the library is imported) and ``/metrics`` from any process reports the sums over all of them, so a scrape
does not depend on which worker answers it.

Labelled counters whose label values are known in advance start at 0 for each of them: an alert on
``increase(...) > 0`` cannot see the first event of a series that appears with it (``deploy/prometheus``).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from deskpilot.domain import Role
from deskpilot.service.batcher import SHED_BACKLOG, SHED_DEADLINE, SHED_EVICTED, SHED_QUEUE_FULL
from deskpilot.store.audit_entry import AuditAction

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.0)
FALLBACK_REASONS = ("timeout", "error", "unavailable")
SHED_REASONS = (SHED_QUEUE_FULL, SHED_EVICTED, SHED_BACKLOG, SHED_DEADLINE)


class ServiceMetrics:
    def __init__(self) -> None:
        # the library picks its value storage once, at import: follow that choice, not today's environment
        shared = getattr(values.ValueClass, "_multiprocess", False)
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) if shared else None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_latency = Histogram(
            "deskpilot_http_request_duration_seconds",
            "HTTP request latency by route and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_latency = Histogram(
            "deskpilot_model_latency_seconds",
            "Time of one batched model call.",
            ["role"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "deskpilot_batch_size", "Texts per model call.", ["role"], buckets=BATCH_BUCKETS, registry=r
        )
        self.predictions = Counter(
            "deskpilot_predictions_total", "Decisions by intent and route.", ["intent", "route"], registry=r
        )
        self.confidence = Histogram(
            "deskpilot_confidence",
            "Top-intent confidence of decisions.",
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "deskpilot_fallback_total",
            "Requests answered by the fallback model, or routed to a person because no model could answer.",
            ["reason"],
            registry=r,
        )
        self.store_queue_depth = Gauge(
            "deskpilot_store_queue_depth",
            "Decisions waiting to be written to the store.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.store_dropped = Counter(
            "deskpilot_store_dropped_total",
            "Decisions dropped because the store buffer was full.",
            registry=r,
        )
        self.shadow_log_dropped = Counter(
            "deskpilot_shadow_log_dropped_total",
            "Shadow answers not logged because the shadow log buffer was full.",
            registry=r,
        )
        self.model_info = Gauge(
            "deskpilot_model_info",
            "Models serving (value 1).",
            ["role", "name", "version", "family"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_load_failures = Counter(
            "deskpilot_model_load_failures_total",
            "Candidate models that failed to load.",
            ["role"],
            registry=r,
        )
        self.rate_limited = Counter(
            "deskpilot_rate_limited_total",
            "Requests refused by the tenant's rate limit.",
            ["tenant"],
            registry=r,
        )
        self.shadow_shed = Counter(
            "deskpilot_shadow_shed_total",
            "Texts the shadow challenger skipped because it was behind.",
            registry=r,
        )
        self.rollbacks = Counter(
            "deskpilot_rollbacks_total",
            "Automatic rollbacks of a challenger, by the rule it broke.",
            ["rule"],
            registry=r,
        )
        self.auth_failures = Counter(
            "deskpilot_auth_failures_total", "Requests with a missing or unknown API key.", registry=r
        )
        self.shed = Counter(
            "deskpilot_shed_total",
            "Requests refused or dropped (503): a model queue was full (queue_full), room was made for a "
            "lighter tenant (evicted), the queue ahead would outlast the time budget (backlog), or the "
            "request waited past it (deadline).",
            ["reason"],
            registry=r,
        )
        self.audit_write_failures = Counter(
            "deskpilot_audit_write_failures_total",
            "Actions done without their audit entry: the store refused it, or was unreachable for an action "
            "that cannot be queued.",
            ["action"],
            registry=r,
        )
        self.audit_pending = Gauge(
            "deskpilot_audit_pending_entries",
            "Audit entries queued in the home's pending file until the store is reachable again.",
            registry=r,
            multiprocess_mode="livemostrecent",  # every worker reads the same file: the latest count wins
        )
        self._start_known_series()

    def _start_known_series(self) -> None:
        for reason in FALLBACK_REASONS:
            self.fallbacks.labels(reason)
        for reason in SHED_REASONS:
            self.shed.labels(reason)
        for role in Role:
            self.model_load_failures.labels(str(role))
        for action in AuditAction:
            self.audit_write_failures.labels(str(action))

    def observe_batch(self, role: str, size: int, seconds: float) -> None:
        self.batch_size.labels(role).observe(size)
        self.model_latency.labels(role).observe(seconds)

    def set_model(self, role: str, name: str, version: str, family: str) -> None:
        """One ``model_info`` series at 1 per role: the model serving it now.

        A replaced model's series is removed; with several processes its sample files cannot be, so it is
        set to 0 instead (and a version one worker still serves during a swap shows 1 until it swaps too).
        """
        for labels in list(
            self.model_info._metrics
        ):  # prometheus_client has no public way to list a metric's series
            if labels[0] == role:
                if self.multiprocess_dir is None:
                    self.model_info.remove(*labels)
                else:
                    self.model_info.labels(*labels).set(0)
        self.model_info.labels(role, name, version, family).set(1)

    def render(self) -> bytes:
        """The exposition text: this process's registry, or the sums over every worker's files."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(combined)

    def process_exited(self) -> None:
        """Drop this process's live gauges (queue depth, serving models) from the shared files."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]
