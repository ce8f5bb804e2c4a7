"""The operator pages' charts, as SVG text from :mod:`deskpilot.console.svg`: monitoring history, service
health sparklines, shadow agreement by intent.

Each returns ``Markup``: safe to embed because :mod:`~deskpilot.console.svg` escapes every label itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup

from deskpilot.console import svg
from deskpilot.console.health import HealthReport, HealthStats
from deskpilot.monitoring.history import HistoryPoint
from deskpilot.monitoring.types import SignalName
from deskpilot.rollout.report import ShadowReport

ACCURACY = (
    (SignalName.ACCURACY_ESTIMATE, "estimated (no labels)"),
    (SignalName.ACCURACY_FEEDBACK, "realized (agents' feedback)"),
    (SignalName.ACCURACY_AUDIT_SAMPLE, "realized (audit sample)"),
)
Q_FLOOR = 1e-12  # a q-value of 0 still has a place on the log axis
INTENTS_SHOWN = 15
BARS_WIDTH = 480  # narrower than a line chart: its labels stay legible in a narrow window


def percent(value: float) -> str:
    return f"{value * 100:.3g}%"


def signal_names(points: Sequence[HistoryPoint]) -> list[str]:
    """Every signal in the history: the known ones in their declared order, then any others by name."""
    seen = {name for point in points for name in point.signals}
    known = [str(name) for name in SignalName if str(name) in seen]
    return known + sorted(seen - set(known))


def accuracy_chart(points: Sequence[HistoryPoint], reference: float | None) -> Markup:
    """Estimated against realized accuracy per all-tenant window, with the validation accuracy."""
    series = []
    for name, label in ACCURACY:
        pairs = [(p.end, _statistic(p, name)) for p in points]
        fired = [_fired(p, name) for p in points]
        series.append(svg.Series(label, pairs, fired))
    return Markup(
        svg.line_chart(
            series,
            title="Accuracy per window: estimated and realized",
            threshold=reference,
            threshold_label="validation accuracy" if reference is not None else "",
            y_format=percent,
            desc="Red crosses mark windows where the signal fired.",
        )
    )


def q_value_chart(points: Sequence[HistoryPoint], alpha: float | None) -> Markup:
    """Benjamini–Hochberg q-values of every drift signal on a log axis; below alpha a signal fires."""
    series = []
    for name in signal_names(points):
        pairs = [(p.end, _q(p, name)) for p in points]
        series.append(svg.Series(name, pairs, [_fired(p, name) for p in points]))
    return Markup(
        svg.line_chart(
            series,
            title="Drift signals: q-value per window (log scale)",
            threshold=alpha,
            threshold_label=f"alpha {alpha:g}" if alpha is not None else "",
            log_y=True,
            y_format=lambda v: f"{v:g}",
            desc="A signal fires when its q-value falls below alpha; red crosses mark fired windows.",
        )
    )


def statistic_charts(points: Sequence[HistoryPoint]) -> list[tuple[str, Markup]]:
    """One small chart per signal: its statistic at each window end, fired windows marked."""
    charts = []
    for name in signal_names(points):
        pairs = [(p.end, _statistic(p, name)) for p in points]
        series = svg.Series(name, pairs, [_fired(p, name) for p in points])
        chart = svg.line_chart([series], title=name, y_label="statistic", width=420, height=190)
        charts.append((name, Markup(chart)))
    return charts


def _statistic(point: HistoryPoint, name: str) -> float | None:
    signal = point.signals.get(name)
    return None if signal is None else signal.statistic


def _q(point: HistoryPoint, name: str) -> float | None:
    signal = point.signals.get(name)
    if signal is None or signal.q_value is None:
        return None
    return max(signal.q_value, Q_FLOOR)


def _fired(point: HistoryPoint, name: str) -> bool:
    signal = point.signals.get(name)
    return signal is not None and signal.fired


HEALTH_SERIES: dict[str, tuple[str, Callable[[HealthStats], float | None]]] = {
    "rate": ("Request rate", lambda s: s.request_rate),
    "p50": ("Median latency", lambda s: None if s.p50 is None else s.p50.estimate),
    "p99": ("99th percentile latency", lambda s: None if s.p99 is None else s.p99.estimate),
    "errors": ("Server error rate", lambda s: s.error_rate),
    "fallbacks": ("Fallback rate", lambda s: s.fallback_rate),
    "queue": ("Store queue depth", lambda s: s.queue_depth),
}


def health_sparklines(report: HealthReport) -> dict[str, Markup]:
    """A sparkline per health tile, one point per sampled interval."""
    return {
        key: Markup(svg.sparkline(report.series(value), label=f"{label}, recent intervals"))
        for key, (label, value) in HEALTH_SERIES.items()
    }


def agreement_chart(report: ShadowReport) -> Markup:
    """Agreement with the champion by the champion's intent, the least agreed first."""
    rows = report.ranked_intents[:INTENTS_SHOWN]
    bars = [svg.Bar(row.intent, row.agreement.rate, f"(n={row.agreement.n})") for row in rows]
    title = f"Agreement by intent ({report.min_count}+ requests), least first"
    chart = svg.horizontal_bars(bars, title=title, maximum=1.0, value_format=percent, width=BARS_WIDTH)
    return Markup(chart)
