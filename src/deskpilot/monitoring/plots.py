"""The monitor report's figures over time, as PNG bytes drawn like the other reports' (Figure + Agg).

Every figure reads the all-tenant windows (:func:`~deskpilot.monitoring.history.overall_history`), one
point per window at its end. A line needs two points, so with fewer the report draws nothing and says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from deskpilot.evaluation.plots import figure_png, literal, new_figure
from deskpilot.monitoring.history import HistoryPoint
from deskpilot.monitoring.types import SignalName

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MIN_POINTS = 2
PANEL_COLUMNS = 3
MIN_PAD_DAYS = 1 / 1440  # a minute each side, when the history spans no time at all
Q_FLOOR = 1e-12  # a q-value of 0 still has a place on the log axis
FIRED_COLOR = "#d62728"
LINE_COLOR = "#1f77b4"
ACCURACY_SIGNALS = (
    SignalName.ACCURACY_FEEDBACK,
    SignalName.ACCURACY_ESTIMATE,
    SignalName.ACCURACY_AUDIT_SAMPLE,
)


def over_time(
    points: Sequence[HistoryPoint], *, alpha: float, reference_accuracy: float | None
) -> dict[str, bytes]:
    """The figures the history allows, by name: ``statistics``, ``q_values`` and ``accuracy`` (only when
    some accuracy was measured); none below :data:`MIN_POINTS` windows."""
    if len(points) < MIN_POINTS:
        return {}
    names = signal_names(points)
    figures = {
        "statistics": statistics_panels(points, names),
        "q_values": q_value_chart(points, names, alpha=alpha),
    }
    if any(not math.isnan(_statistic(p, name)) for p in points for name in ACCURACY_SIGNALS):
        figures["accuracy"] = accuracy_chart(points, reference_accuracy=reference_accuracy)
    return figures


def signal_names(points: Sequence[HistoryPoint]) -> list[str]:
    """Every signal seen in the history: the known ones in their declared order, then any others by name."""
    seen = {name for point in points for name in point.signals}
    known = [str(name) for name in SignalName if str(name) in seen]
    return known + sorted(seen - set(known))


def statistics_panels(points: Sequence[HistoryPoint], names: Sequence[str]) -> bytes:
    """One small panel per signal: its statistic at each window end, fired windows marked."""
    rows = max(1, math.ceil(len(names) / PANEL_COLUMNS))
    fig = new_figure(10.0, 2.3 * rows + 0.6)
    axes = fig.subplots(rows, PANEL_COLUMNS, squeeze=False, sharex=True).ravel()
    ends = [_day(point.end) for point in points]
    for ax, name in zip(axes, names, strict=False):
        values = [_statistic(point, name) for point in points]
        if all(math.isnan(value) for value in values):
            ax.text(0.5, 0.5, "no value in these windows", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
        ax.plot(ends, values, color=LINE_COLOR, marker="o", markersize=3, linewidth=1)
        fired = [(_day(p.end), v) for p, v in zip(points, values, strict=True) if _fired(p, name)]
        if fired:
            ax.scatter(*zip(*fired, strict=True), color=FIRED_COLOR, marker="X", s=40, zorder=3)
        _version_changes(ax, points)
        ax.set_title(literal(name), fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    for ax in axes:
        _date_axis(ax, points)
    fig.suptitle("Signal statistic per all-tenant window (red X: fired)", fontsize=10)
    return figure_png(fig)


def q_value_chart(points: Sequence[HistoryPoint], names: Sequence[str], *, alpha: float) -> bytes:
    """Benjamini–Hochberg q-values per signal on a log scale; below the alpha line a signal fires."""
    from matplotlib import colormaps

    fig = new_figure(8.0, 4.4)
    ax = fig.add_subplot()
    palette = colormaps["tab20"]
    for i, name in enumerate(names):
        pairs = [(_day(p.end), max(p.signals[name].q_value or 0.0, Q_FLOOR)) for p in points if _q(p, name)]
        if pairs:
            ends, values = zip(*pairs, strict=True)
            ax.plot(
                ends,
                values,
                marker="o",
                markersize=3,
                linewidth=1,
                color=palette(_hue(i)),
                label=literal(name),
            )
    _version_changes(ax, points)
    ax.axhline(alpha, color=FIRED_COLOR, linestyle="--", linewidth=1.2, label=f"alpha {alpha:g}")
    ax.set_yscale("log")
    ax.set_ylabel("q-value (BH), log scale")
    ax.set_title("q-values per all-tenant window", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    _date_axis(ax, points)
    return figure_png(fig)


def accuracy_chart(points: Sequence[HistoryPoint], *, reference_accuracy: float | None) -> bytes:
    """The accuracy measured from feedback, estimated without labels and from the audit sample, against the
    accuracy the model had on its reference data."""
    fig = new_figure(7.0, 3.8)
    ax = fig.add_subplot()
    colors = (LINE_COLOR, "#ff7f0e", "#2ca02c")
    for name, color in zip(ACCURACY_SIGNALS, colors, strict=True):
        pairs = [(_day(p.end), _statistic(p, name)) for p in points if not math.isnan(_statistic(p, name))]
        if pairs:
            ends, values = zip(*pairs, strict=True)
            ax.plot(ends, values, marker="o", markersize=3, linewidth=1.2, color=color, label=str(name))
    _version_changes(ax, points)
    if reference_accuracy is not None and math.isfinite(reference_accuracy):
        ax.axhline(
            reference_accuracy, color="#555555", linestyle=":", label=f"reference {reference_accuracy:.3f}"
        )
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per all-tenant window", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    _date_axis(ax, points)
    return figure_png(fig)


def _hue(i: int) -> int:
    """An index into tab20: its ten strong colours first, then their pale twins (13 signals stay apart)."""
    return (2 * i) % 20 + (i // 10) % 2


def _statistic(point: HistoryPoint, name: str) -> float:
    signal = point.signals.get(name)
    return math.nan if signal is None else signal.statistic


def _fired(point: HistoryPoint, name: str) -> bool:
    signal = point.signals.get(name)
    return signal is not None and signal.fired


def _q(point: HistoryPoint, name: str) -> bool:
    signal = point.signals.get(name)
    return signal is not None and signal.q_value is not None


def _version_changes(ax: Axes, points: Sequence[HistoryPoint]) -> None:
    """A grey line where the watched model version changed: a jump there is a new reference, not drift."""
    for before, after in itertools.pairwise(points):
        if after.model_version != before.model_version:
            ax.axvline(_day(after.end), color="#999999", linestyle=":", linewidth=1)


def _date_axis(ax: Axes, points: Sequence[HistoryPoint]) -> None:
    """The whole history's time range on every axis, so that the figures line up, and a series with one
    point (a signal added lately) does not leave the date locator a range of zero width."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    first, last = _day(points[0].end), _day(points[-1].end)
    pad = max((last - first) * 0.03, MIN_PAD_DAYS)
    ax.set_xlim(first - pad, last + pad)
    locator = AutoDateLocator(maxticks=6)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _day(when: datetime) -> float:
    """A time as matplotlib's date number (days since its epoch), the x of every figure here."""
    from matplotlib.dates import date2num

    return float(date2num(when))  # type: ignore[no-untyped-call]
