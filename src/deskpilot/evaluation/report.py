"""An evaluation (and optionally the champion's and the gate's decision) as an HTML and a Markdown report.

The HTML file is self-contained: inline CSS, figures as base64 PNG data URIs, no script and no external
URL, so it can be attached to a ticket or opened offline. Texts in it are customer messages, so the HTML
template escapes everything (Jinja2 autoescape). The Markdown file carries the same tables without the
figures, readable on GitHub; its cells are escaped so a message cannot break a table or inject HTML.

Both are rendered from package templates (``templates/report.{html,md}.j2``) over one context built here.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from deskpilot.evaluation import plots
from deskpilot.evaluation.behavioral import BehavioralTestResult, Failure
from deskpilot.evaluation.bootstrap import BOOTSTRAP_METRICS, LOWER_IS_BETTER, Interval
from deskpilot.evaluation.breakdown import ClassScore, Confusion, ExampleError, SliceScore
from deskpilot.evaluation.evaluate import Evaluation
from deskpilot.evaluation.gate import GateDecision
from deskpilot.evaluation.rendering import (
    FILTERS,
    atomic_write,
    data_uri,
    percent,
    signed,
    template_environment,
)
from deskpilot.evaluation.rendering import text as _text

HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"
METRIC_NAMES = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "auto_coverage": "auto-routed share (coverage)",
    "auto_precision": "precision of auto-routed",
    "ece": "expected calibration error",
}
MODEL_KEYS = ("uri", "name", "version", "alias", "family", "classes", "threshold", "target_precision")


@dataclass(frozen=True)
class MetricRow:
    name: str
    label: str
    challenger: Interval | None
    champion: Interval | None
    delta: float | None  # challenger − champion
    better: bool | None  # whether the delta is an improvement
    digits: int | None = 3  # decimals shown; None: three significant digits


@dataclass(frozen=True)
class ClassRow:
    score: ClassScore
    champion_f1: float | None
    low_support: bool


@dataclass(frozen=True)
class ConfusionRow:
    confusion: Confusion
    champion_count: int | None


@dataclass(frozen=True)
class SliceRow:
    slice: SliceScore
    champion_accuracy: float | None


@dataclass(frozen=True)
class BehavioralRow:
    result: BehavioralTestResult
    champion_rate: float | None
    failures: Sequence[Failure]


@dataclass(frozen=True)
class Header:
    title: str
    generated_at: str
    challenger_model: list[tuple[str, str]]
    champion_model: list[tuple[str, str]] | None
    data: list[tuple[str, str]]


@dataclass
class Context:
    header: Header
    has_champion: bool
    decision: GateDecision | None
    headline: list[MetricRow]
    cost: list[MetricRow]
    unseen: dict[str, Any]
    champion_unseen: dict[str, Any] | None
    confusions: list[ConfusionRow]
    classes: list[ClassRow]
    min_support: int
    worst_slices: list[SliceRow]
    slices: list[SliceRow]
    behavioral_source: str | None
    behavioral_rates: list[MetricRow]
    behavioral_tests: list[BehavioralRow]
    examples: list[ExampleError]
    n_labels: int
    level: str
    images: dict[str, str] = field(default_factory=dict)


def render_html(
    challenger: Evaluation,
    champion: Evaluation | None = None,
    decision: GateDecision | None = None,
    *,
    title: str,
    generated_at: datetime | None = None,
) -> str:
    """One self-contained HTML page: tables, and the figures as inline PNGs."""
    context = build_context(challenger, champion, decision, title=title, generated_at=generated_at)
    context.images = {name: data_uri(png) for name, png in _figures(challenger, champion).items()}
    return _environment().get_template("report.html.j2").render(r=context)


def render_markdown(
    challenger: Evaluation,
    champion: Evaluation | None = None,
    decision: GateDecision | None = None,
    *,
    title: str,
    generated_at: datetime | None = None,
) -> str:
    """The same tables as the HTML report, as GitHub-flavoured Markdown; the figures stay in the HTML."""
    context = build_context(challenger, champion, decision, title=title, generated_at=generated_at)
    text = _environment().get_template("report.md.j2").render(r=context)
    return re.sub(r"\n{3,}", "\n\n", text)


def write_report(
    directory: Path,
    challenger: Evaluation,
    champion: Evaluation | None = None,
    decision: GateDecision | None = None,
    *,
    title: str,
    generated_at: datetime | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``directory``; each appears whole or not at all."""
    stamp = generated_at or datetime.now(UTC)
    html = render_html(challenger, champion, decision, title=title, generated_at=stamp)
    markdown = render_markdown(challenger, champion, decision, title=title, generated_at=stamp)
    directory.mkdir(parents=True, exist_ok=True)
    html_path, md_path = directory / HTML_FILE, directory / MARKDOWN_FILE
    atomic_write(html_path, html)
    atomic_write(md_path, markdown)
    return html_path, md_path


def build_context(
    challenger: Evaluation,
    champion: Evaluation | None,
    decision: GateDecision | None,
    *,
    title: str,
    generated_at: datetime | None = None,
) -> Context:
    stamp = (generated_at or datetime.now(UTC)).isoformat(timespec="seconds")
    behavioral = challenger.behavioral
    champion_behavioral = champion.behavioral if champion is not None else None
    champion_tests = {t.name: t for t in champion_behavioral.tests} if champion_behavioral else {}
    return Context(
        header=Header(
            title=title,
            generated_at=stamp,
            challenger_model=_model_facts(challenger),
            champion_model=_model_facts(champion) if champion is not None else None,
            data=_data_facts(challenger),
        ),
        has_champion=champion is not None,
        decision=decision,
        headline=_headline_rows(challenger, champion),
        cost=_cost_rows(challenger, champion),
        unseen=challenger.unseen_labels,
        champion_unseen=champion.unseen_labels if champion is not None else None,
        confusions=[
            ConfusionRow(c, _pair_count(champion, c.truth, c.predicted)) for c in challenger.top_confusions
        ],
        classes=_class_rows(challenger, champion),
        min_support=int(challenger.data.get("per_class_min_support", 0)),
        worst_slices=_slice_rows(challenger.worst_slices, champion),
        slices=_slice_rows(challenger.slices, champion),
        behavioral_source=behavioral.source if behavioral is not None else None,
        behavioral_rates=_behavioral_rates(challenger, champion),
        behavioral_tests=[
            BehavioralRow(
                test,
                champion_tests[test.name].pass_rate if test.name in champion_tests else None,
                test.failures,
            )
            for test in (behavioral.tests if behavioral is not None else ())
        ],
        examples=list(challenger.examples),
        n_labels=len(challenger.labels),
        level=percent(challenger.data.get("interval_level"), 0),
    )


def _headline_rows(challenger: Evaluation, champion: Evaluation | None) -> list[MetricRow]:
    rows = [
        _compare(
            name,
            METRIC_NAMES.get(name, name),
            challenger.headline.get(name),
            champion.headline.get(name) if champion is not None else None,
            lower_is_better=name in LOWER_IS_BETTER,
        )
        for name in BOOTSTRAP_METRICS
        if name in challenger.headline
    ]
    floor = _point(challenger.per_class_f1_floor)
    champion_floor = _point(champion.per_class_f1_floor) if champion is not None else None
    support = challenger.data.get("per_class_min_support", 0)
    rows.append(_compare("per_class_f1", f"lowest per-class F1 (support ≥ {support})", floor, champion_floor))
    return rows


def _cost_rows(challenger: Evaluation, champion: Evaluation | None) -> list[MetricRow]:
    specs: tuple[tuple[str, str, int | None, bool], ...] = (
        ("latency_p50_ms", "latency p50, one message (ms)", 2, True),
        ("latency_p99_ms", "latency p99, one message (ms)", 2, True),
        ("throughput_per_s", "throughput, batched (messages/s)", 0, False),
        ("cpu_ms_per_message", "CPU time per message (ms)", 3, True),
        ("cost_per_1k", "CPU cost per 1,000 predictions (USD)", None, True),
    )
    return [
        _compare(
            name,
            label,
            _point(float(getattr(challenger.cost, name))),
            _point(float(getattr(champion.cost, name))) if champion is not None else None,
            lower_is_better=lower,
            digits=digits,
        )
        for name, label, digits, lower in specs
    ]


def _behavioral_rates(challenger: Evaluation, champion: Evaluation | None) -> list[MetricRow]:
    if challenger.behavioral is None:
        return []
    theirs = champion.behavioral.pass_rates if champion is not None and champion.behavioral else {}
    labels = {"mft": "minimum functionality", "inv": "invariance", "dir": "directional"}
    return [
        _compare(
            kind,
            f"{labels.get(kind, kind)} ({kind})",
            _point(rate),
            _point(theirs[kind]) if kind in theirs else None,
        )
        for kind, rate in challenger.behavioral.pass_rates.items()
    ]


def _compare(
    name: str,
    label: str,
    mine: Interval | None,
    theirs: Interval | None,
    *,
    lower_is_better: bool = False,
    digits: int | None = 3,
) -> MetricRow:
    """A row comparing two values; a difference too small to show is neither better nor worse."""
    delta = better = None
    if mine is not None and theirs is not None and _finite(mine.value) and _finite(theirs.value):
        delta = mine.value - theirs.value
        visible = float(signed(delta, digits).replace(",", "")) != 0
        better = (delta < 0) == lower_is_better if visible else None
    return MetricRow(name, label, mine, theirs, delta, better, digits)


def _class_rows(challenger: Evaluation, champion: Evaluation | None) -> list[ClassRow]:
    theirs = {s.label: s.f1 for s in champion.per_class} if champion is not None else {}
    min_support = int(challenger.data.get("per_class_min_support", 0))
    return [ClassRow(s, theirs.get(s.label), s.support < min_support) for s in challenger.per_class]


def _slice_rows(slices: Sequence[SliceScore], champion: Evaluation | None) -> list[SliceRow]:
    theirs = {(s.column, s.value): s.accuracy for s in champion.slices} if champion is not None else {}
    return [SliceRow(s, theirs.get((s.column, s.value))) for s in slices]


def _pair_count(evaluation: Evaluation | None, truth: str, predicted: str) -> int | None:
    if evaluation is None:
        return None
    index = {label: i for i, label in enumerate(evaluation.labels)}
    if truth not in index or predicted not in index:
        return None
    return int(evaluation.confusion[index[truth], index[predicted]])


def _model_facts(evaluation: Evaluation) -> list[tuple[str, str]]:
    info = evaluation.model
    ordered = [k for k in MODEL_KEYS if k in info] + sorted(k for k in info if k not in MODEL_KEYS)
    return [(key, _text(info[key])) for key in ordered if info[key] is not None]


def _data_facts(evaluation: Evaluation) -> list[tuple[str, str]]:
    data = evaluation.data
    facts = [
        ("source", _text(data.get("source"))),
        ("rows", f"{data.get('rows', 0):,}"),
        ("scored rows (label known to the model)", f"{data.get('scored_rows', 0):,}"),
        ("labels in the data", _text(data.get("labels"))),
        ("classes the model knows", f"{len(evaluation.labels)}"),
        ("bootstrap resamples", _text(data.get("bootstrap"))),
        ("interval level", percent(data.get("interval_level"), 0)),
    ]
    if data.get("extra_columns"):
        facts.append(("slice columns", ", ".join(map(str, data["extra_columns"]))))
    return facts


def _figures(challenger: Evaluation, champion: Evaluation | None) -> dict[str, bytes]:
    pairs = [("challenger", challenger)] + ([("champion", champion)] if champion is not None else [])
    target = challenger.model.get("target_precision")
    return {
        "reliability": plots.reliability_diagram(
            [plots.ReliabilitySeries(_series_name(name, e), e.reliability) for name, e in pairs]
        ),
        "coverage": plots.coverage_precision_curve(
            [
                plots.CurveSeries(
                    _series_name(name, e),
                    e.curve.get("coverage", []),
                    e.curve.get("precision", []),
                    _operating_point(e),
                    e.model.get("threshold"),
                )
                for name, e in pairs
            ],
            target_precision=float(target) if target is not None else None,
        ),
        "confusion": plots.confusion_heatmap(
            challenger.confusion, challenger.labels, challenger.top_confusions
        ),
        "per_class_f1": plots.per_class_f1_chart(challenger.per_class),
    }


def _operating_point(evaluation: Evaluation) -> tuple[float, float] | None:
    coverage = evaluation.headline.get("auto_coverage")
    precision = evaluation.headline.get("auto_precision")
    if coverage is None or precision is None or not coverage.value or not _finite(precision.value):
        return None
    return coverage.value, precision.value


def _series_name(role: str, evaluation: Evaluation) -> str:
    ref = evaluation.model.get("uri") or evaluation.model.get("family")
    return f"{role}: {ref}" if ref else role


def _point(value: float | None) -> Interval | None:
    if value is None:
        return None
    return Interval(value=value, low=math.nan, high=math.nan, level=math.nan)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@functools.cache
def _environment() -> jinja2.Environment:
    return template_environment("deskpilot.evaluation", FILTERS)
