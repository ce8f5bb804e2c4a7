"""The monitor's results as Prometheus gauges: on the service's ``/metrics`` when it runs the monitor itself,
or in a text file for node_exporter's textfile collector when ``deskpilot monitor`` runs on a schedule.

The names are a contract with ``deploy/prometheus/rules`` and the runbook; ``tenant`` is ``*`` for the
window over every tenant. Only the latest window of each scope is exported: gauges say what is true now,
the store keeps the history.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

from deskpilot.monitoring.result import MonitorResult
from deskpilot.monitoring.types import SignalName

ALL_TENANTS = "*"
ACCURACY_METHODS = {
    SignalName.ACCURACY_FEEDBACK: "feedback",
    SignalName.ACCURACY_AUDIT_SAMPLE: "audit_sample",
}


class MonitorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        gauge = self._gauge
        self.fired = gauge(
            "deskpilot_monitor_signal_fired",
            "1 when the signal fired in the latest monitor window, else 0.",
            ("signal", "tenant"),
        )
        self.q_value = gauge(
            "deskpilot_monitor_q_value",
            "Benjamini-Hochberg adjusted p-value of the signal in the latest window.",
            ("signal", "tenant"),
        )
        self.statistic = gauge(
            "deskpilot_monitor_statistic",
            "The signal's statistic in the latest window (JS distance, KS D, AUC, MMD, TV distance, ...).",
            ("signal", "tenant"),
        )
        self.window_decisions = gauge(
            "deskpilot_monitor_window_decisions",
            "Decisions of the watched model in the latest window.",
            ("tenant",),
        )
        self.estimated_accuracy = gauge(
            "deskpilot_monitor_estimated_accuracy",
            "Accuracy in the latest window: from verdicts (feedback, audit_sample) or estimated without "
            "labels (confidence, label_shift_corrected).",
            ("tenant", "method"),
        )
        self.reference_accuracy = gauge(
            "deskpilot_monitor_reference_accuracy", "Validation accuracy of the watched model version."
        )
        self.last_run = gauge(
            "deskpilot_monitor_last_run_timestamp_seconds", "When the monitor last finished a run (Unix)."
        )
        self.failures = Counter(
            "deskpilot_monitor_run_failures_total", "Monitor runs that failed.", registry=self.registry
        )

    def _gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        """A gauge of the latest run: with several server processes, the one that ran it reports it."""
        return Gauge(name, documentation, labels, registry=self.registry, multiprocess_mode="livemax")

    def update(self, result: MonitorResult) -> None:
        """Export the latest window of each scope of ``result``."""
        latest = {window.tenant: window for window in result.windows}
        if None not in latest:  # no decision of the watched version: say so, never keep the last count
            self.window_decisions.labels(ALL_TENANTS).set(0)
        for scope, window in latest.items():
            tenant = ALL_TENANTS if scope is None else scope
            self.window_decisions.labels(tenant).set(window.decisions)
            for signal in window.signals:
                if signal.skipped is not None:
                    continue
                labels = (str(signal.name), tenant)
                self.fired.labels(*labels).set(1.0 if signal.fired else 0.0)
                self.statistic.labels(*labels).set(signal.statistic)
                if signal.q_value is not None:
                    self.q_value.labels(*labels).set(signal.q_value)
                method = ACCURACY_METHODS.get(signal.name)
                if method is not None:
                    self.estimated_accuracy.labels(tenant, method).set(signal.statistic)
                if signal.name is SignalName.ACCURACY_ESTIMATE:
                    self.estimated_accuracy.labels(tenant, "confidence").set(signal.statistic)
                    corrected = signal.detail.get("label_shift_corrected")
                    if isinstance(corrected, int | float):
                        self.estimated_accuracy.labels(tenant, "label_shift_corrected").set(corrected)
        if result.reference_accuracy is not None:
            self.reference_accuracy.set(result.reference_accuracy)
        self.last_run.set(result.finished_at.timestamp())

    def write_textfile(self, path: Path) -> None:
        """Atomically write the exposition text (node_exporter's textfile collector reads ``*.prom``)."""
        write_to_textfile(str(path), self.registry)
