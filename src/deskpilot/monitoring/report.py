"""A monitor run as console lines, a self-contained HTML page and a Markdown file.

Rendered like the other reports (:mod:`deskpilot.rollout.render`): package templates
(``templates/monitor.{html,md}.j2``) over a context built here, the HTML autoescaped with its figures as
inline PNG data URIs (no script, no external URL), Markdown cells escaped, both files written atomically.
Tenant names and signal details come from data and are treated as hostile text.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2

from deskpilot.domain import ModelRef
from deskpilot.evaluation.rendering import FILTERS, atomic_write, data_uri, template_environment
from deskpilot.monitoring import plots
from deskpilot.monitoring.details import DetailView, detail_view
from deskpilot.monitoring.history import HistoryPoint, overall_history
from deskpilot.monitoring.result import MonitorResult, WindowResult
from deskpilot.monitoring.types import Signal
from deskpilot.store.records import MonitorRunRecord

HTML_FILE = "monitor.html"
MARKDOWN_FILE = "monitor.md"
LABEL_WIDTH = 14


@dataclass(frozen=True)
class SignalRow:
    """One signal as the table shows it: every number already formatted ("n/a" where there is none)."""

    name: str
    kind: str
    statistic: str
    p_value: str
    q_value: str
    interval: str
    sampling_error: str
    sizes: str
    fired: bool
    skipped: str


@dataclass(frozen=True)
class FiredDetail:
    name: str
    view: DetailView


@dataclass(frozen=True)
class Scope:
    """One window: who it covers, when, and its signals."""

    anchor: str
    label: str
    window: WindowResult
    rows: list[SignalRow]
    details: list[FiredDetail]


def title_of(result: MonitorResult) -> str:
    return f"Monitor report: {model_uri(result)}"


def model_uri(result: MonitorResult) -> str:
    return ModelRef(result.model_name, version=result.model_version).uri


def scope_label(tenant: str | None) -> str:
    return "all tenants" if tenant is None else f"tenant {tenant}"


def ordered_windows(result: MonitorResult) -> list[WindowResult]:
    """The all-tenant windows first, then each tenant's by name, each scope in time order."""
    return sorted(result.windows, key=lambda w: (w.tenant is not None, w.tenant or "", w.start))


def tests_counted(result: MonitorResult) -> int:
    """The tests the Benjamini–Hochberg adjustment ran over: every computed signal with a p-value."""
    return sum(1 for w in result.windows for s in w.signals if s.p_value is not None and s.skipped is None)


def headline_lines(result: MonitorResult) -> list[str]:
    """What ``deskpilot monitor`` prints: one line per window, then the verdict."""
    windows = ordered_windows(result)
    scopes = [w.tenant for w in windows]
    lines = []
    for window in windows:
        label = _one_line(scope_label(window.tenant))
        when = f" in {_stamp(window.start)}..{_stamp(window.end)}" if scopes.count(window.tenant) > 1 else ""
        fired = ", ".join(_fired_text(signal) for signal in window.fired)
        skipped = sum(1 for signal in window.signals if signal.skipped is not None)
        lines.append(
            f"{label:<{LABEL_WIDTH}} {window.decisions:,} decisions{when}: "
            + (f"fired {fired}" if fired else "quiet")
            + (f"; {skipped} skipped" if skipped else "")
        )
    lines.append(f"{'verdict':<{LABEL_WIDTH}} {verdict_text(result)}")
    return lines


def verdict_text(result: MonitorResult) -> str:
    if not result.windows:
        return (
            f"nothing to test: no decisions of version {result.model_version} in the range (is the service "
            "logging decisions, and is this the version that serves?)"
        )
    fired = sum(len(window.fired) for window in result.windows)
    at = f"alpha {result.alpha:g}, Benjamini–Hochberg over {tests_counted(result)} tests"
    if not fired:
        return f"quiet: nothing fired in {len(result.windows)} window(s) ({at})"
    windows = sum(1 for window in result.windows if window.fired)
    return f"FIRED: {fired} signal(s) in {windows} window(s) ({at})"


def render_html(result: MonitorResult, history: Sequence[MonitorRunRecord]) -> str:
    points = overall_history(result, history)
    images = plots.over_time(points, alpha=result.alpha, reference_accuracy=result.reference_accuracy)
    uris = {name: data_uri(png) for name, png in images.items()}
    return _environment().get_template("monitor.html.j2").render(**_context(result, points), images=uris)


def render_markdown(result: MonitorResult, history: Sequence[MonitorRunRecord]) -> str:
    points = overall_history(result, history)
    text = _environment().get_template("monitor.md.j2").render(**_context(result, points))
    return re.sub(r"\n{3,}", "\n\n", text)


def write_monitor_report(
    result: MonitorResult, history: list[MonitorRunRecord], directory: Path
) -> tuple[Path, Path]:
    """Write ``monitor.html`` and ``monitor.md`` into ``directory``; each appears whole or not at all."""
    html, markdown = render_html(result, history), render_markdown(result, history)
    directory.mkdir(parents=True, exist_ok=True)
    html_path, md_path = directory / HTML_FILE, directory / MARKDOWN_FILE
    atomic_write(html_path, html)
    atomic_write(md_path, markdown)
    return html_path, md_path


def signal_row(signal: Signal) -> SignalRow:
    return SignalRow(
        name=str(signal.name),
        kind=str(signal.kind),
        statistic=_general(signal.statistic),
        p_value=_general(signal.p_value),
        q_value=_general(signal.q_value),
        interval=_interval(signal.interval),
        sampling_error="n/a" if _missing(signal.sampling_error) else f"±{signal.sampling_error:.3g}",
        sizes=f"{signal.n_window:,} / {signal.n_reference:,}",
        fired=signal.fired,
        skipped=signal.skipped or "",
    )


def _context(result: MonitorResult, points: Sequence[HistoryPoint]) -> dict[str, object]:
    scopes = [
        Scope(
            anchor=f"window-{i}",
            label=scope_label(window.tenant),
            window=window,
            rows=[signal_row(signal) for signal in window.signals],
            details=[FiredDetail(str(s.name), detail_view(s.detail)) for s in window.fired],
        )
        for i, window in enumerate(ordered_windows(result), start=1)
    ]
    return {
        "r": result,
        "title": title_of(result),
        "model_uri": model_uri(result),
        "verdict": verdict_text(result),
        "tests": tests_counted(result),
        "scopes": scopes,
        "fired": [(scope, row) for scope in scopes for row in scope.rows if row.fired],
        "points": points,
        "min_points": plots.MIN_POINTS,
        "stamp": _stamp,
        "versions": _versions,
    }


def _fired_text(signal: Signal) -> str:
    if signal.q_value is not None:
        return f"{signal.name} (q={signal.q_value:.3g})"
    if signal.interval is not None:
        return f"{signal.name} (interval {_interval(signal.interval)})"
    return str(signal.name)


def _general(value: float | None) -> str:
    return "n/a" if _missing(value) else f"{value:.3g}"


def _interval(value: tuple[float, float] | None) -> str:
    if value is None or any(_missing(v) for v in value):
        return "n/a"
    return f"[{value[0]:.3g}, {value[1]:.3g}]"


def _missing(value: float | None) -> bool:
    return value is None or not math.isfinite(value)


def _versions(window: WindowResult) -> str:
    counts = sorted(window.model_versions.items(), key=lambda item: -item[1])
    return ", ".join(f"{version} ({n:,})" for version, n in counts) or "-"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _stamp(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


@functools.cache
def _environment() -> jinja2.Environment:
    return template_environment("deskpilot.monitoring", FILTERS)
