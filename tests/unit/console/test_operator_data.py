"""What the operator pages read: registered versions with their documents, and the stored monitor runs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deskpilot import tags
from deskpilot.console import operator_charts, operator_data
from deskpilot.errors import ModelNotFoundError
from deskpilot.registry.base import MODEL_CARD, REPORT_MD, ModelVersion
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.records import MonitorRunRecord

NAME = "triage"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class DocumentedRegistry(InMemoryRegistry):
    """The in-memory registry with versions added as they would be listed, without training a model."""

    def add(self, version: ModelVersion, documents: dict[str, str]) -> None:
        self._versions[(version.name, version.version)] = version
        self._documents[(version.name, version.version)] = documents


@pytest.fixture
def registry() -> DocumentedRegistry:
    registry = DocumentedRegistry()
    gated = {
        tags.FAMILY: "tfidf",
        tags.GATE: tags.GATE_PASS,
        tags.GATE_REASON: "every rule held <b>",
        tags.DATASET_DIGEST: "abc123",
        tags.SEED: "0",
    }
    registry.add(
        ModelVersion(NAME, "1", "2026-03-01", tags=gated, metrics={"val_accuracy": 0.9, "val_ece": math.nan}),
        {
            MODEL_CARD: "# Card\n\nIntended use: <script>x()</script>",
            REPORT_MD: "# Report\n\n| a |\n|---|\n| 1 |",
        },
    )
    registry.add(ModelVersion(NAME, "2", "2026-03-02", tags={tags.FAMILY: "embed"}), {})
    registry.set_alias(NAME, "champion", "1")
    return registry


def test_model_rows_newest_first_with_gate_and_finite_metrics(registry: DocumentedRegistry) -> None:
    rows = operator_data.model_rows(registry, NAME)
    assert [row.version.version for row in rows] == ["2", "1"]
    newer, older = rows
    assert (newer.gate, older.gate) == (None, "pass")
    assert older.version.aliases == ("champion",)
    assert older.metric("val_accuracy") == 0.9
    assert older.metric("val_ece") is None
    assert older.metric("missing") is None


def test_model_detail_renders_its_documents_escaped(registry: DocumentedRegistry) -> None:
    detail = operator_data.model_detail(registry, NAME, "1")
    assert detail.metrics == [("val_accuracy", 0.9)]  # NaN left out
    assert ("Dataset snapshot", "abc123") in detail.lineage
    assert ("Outcome", "pass") in detail.gate
    assert detail.card is not None
    assert "<script>" not in str(detail.card)
    assert "&lt;script&gt;" in str(detail.card)
    assert detail.report is not None
    assert "<table" in str(detail.report)
    bare = operator_data.model_detail(registry, NAME, "2")
    assert (bare.card, bare.report, bare.gate) == (None, None, [])


@pytest.mark.parametrize("version", ["3", "../1", "1 OR 1", ""])
def test_an_unknown_version_is_not_found(registry: DocumentedRegistry, version: str) -> None:
    with pytest.raises(ModelNotFoundError):
        operator_data.model_detail(registry, NAME, version)


def test_reference_accuracy_is_the_watched_versions_validation_accuracy(registry: DocumentedRegistry) -> None:
    assert operator_data.reference_accuracy(registry, NAME, "1") == 0.9
    assert operator_data.reference_accuracy(registry, NAME, "2") is None
    assert operator_data.reference_accuracy(registry, NAME, "9") is None
    assert operator_data.reference_accuracy(registry, NAME, "") is None


def _signal(name: str, statistic: float | None, q: float | None, *, fired: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "statistic": statistic,
        "q_value": q,
        "fired": fired,
        "skipped": None,
        "n_window": 80,
    }


def _run(hour: int, tenant: str | None, signals: list[Any], *, model: str = NAME) -> MonitorRunRecord:
    end = T0 + timedelta(hours=hour)
    result = {"alpha": 0.05, "tenant": tenant, "end": end.isoformat(), "signals": signals}
    return MonitorRunRecord(
        started_at=end,
        finished_at=end,
        since=end - timedelta(hours=1),
        until=end,
        tenant=tenant,
        model_name=model,
        model_version="1",
        decisions=80,
        fired=any(isinstance(s, dict) and s.get("fired") for s in signals),
        result=result,
    )


def test_monitoring_view_reads_history_latest_signals_and_alerts() -> None:
    store = InMemoryStore()
    store.add_monitor_run(
        _run(0, None, [_signal("confidence", 0.1, 0.5), _signal("accuracy_estimate", 0.9, None)])
    )
    store.add_monitor_run(_run(0, "acme", [_signal("confidence", 0.4, 0.01, fired=True)]))
    store.add_monitor_run(_run(1, None, [_signal("confidence", 0.3, 0.001, fired=True), {"odd": 1}, "junk"]))
    store.add_monitor_run(_run(1, None, [_signal("confidence", 9.0, 0.0, fired=True)], model="other"))
    view = operator_data.monitoring_view(store, NAME)
    assert [p.end for p in view.points] == [T0, T0 + timedelta(hours=1)]  # all-tenant windows of this model
    assert view.windows == 2
    assert view.alpha == 0.05
    assert view.latest_end == T0 + timedelta(hours=1)
    assert [(s.name, s.statistic, s.q_value, s.fired) for s in view.latest] == [
        ("confidence", 0.3, 0.001, True)
    ]
    assert [(a.end.hour, a.tenant, a.signal.name) for a in view.alerts] == [
        (1, None, "confidence"),
        (0, "acme", "confidence"),
    ]


def test_monitoring_view_without_runs() -> None:
    view = operator_data.monitoring_view(InMemoryStore(), NAME)
    assert (view.points, view.latest, view.alerts, view.alpha, view.latest_end) == ([], [], [], None, None)
    assert "no data yet" in str(operator_charts.accuracy_chart(view.points, None))
    assert "no data yet" in str(operator_charts.q_value_chart(view.points, None))
    assert operator_charts.statistic_charts(view.points) == []


def test_signal_rows_tolerate_what_other_versions_wrote() -> None:
    rows = operator_data.signal_rows(
        {
            "signals": [
                {"name": "x", "statistic": "high", "q_value": math.inf, "n_window": True, "skipped": "small"}
            ]
        }
    )
    assert [(r.name, r.statistic, r.q_value, r.n_window, r.skipped) for r in rows] == [
        ("x", None, None, None, "small")
    ]
    assert operator_data.signal_rows({"signals": "none"}) == []
    assert operator_data.signal_rows({}) == []


def test_monitoring_charts_draw_the_history() -> None:
    store = InMemoryStore()
    for hour in range(3):
        signals = [
            _signal("confidence", 0.1 * hour, 0.5 / (hour + 1), fired=hour == 2),
            _signal("accuracy_estimate", 0.9, None),
            _signal("accuracy_feedback", 0.85 if hour != 1 else None, None),
        ]
        store.add_monitor_run(_run(hour, None, signals))
    view = operator_data.monitoring_view(store, NAME)
    accuracy = str(operator_charts.accuracy_chart(view.points, 0.9))
    assert "estimated (no labels)" in accuracy
    assert "validation accuracy" in accuracy
    q_chart = str(operator_charts.q_value_chart(view.points, view.alpha))
    assert "alpha 0.05" in q_chart
    assert 'class="fired"' in q_chart
    assert [name for name, _ in operator_charts.statistic_charts(view.points)] == [
        "confidence",
        "accuracy_feedback",
        "accuracy_estimate",
    ]
