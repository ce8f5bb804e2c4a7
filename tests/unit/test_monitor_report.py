"""The monitor report: hostile data stays escaped, the plots appear only with a history, details of any
shape render, and the console lines name what fired."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from deskpilot.monitoring.details import MAX_ROWS, detail_view
from deskpilot.monitoring.history import overall_history
from deskpilot.monitoring.report import (
    headline_lines,
    render_html,
    render_markdown,
    write_monitor_report,
)
from deskpilot.monitoring.result import MonitorResult, WindowResult
from deskpilot.monitoring.types import Signal, SignalKind, SignalName
from deskpilot.store.records import MonitorRunRecord

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
EVIL = "<script>alert(1)</script>"
PIPE = "a|b"


def signals(day: int, *, drift: bool) -> list[Signal]:
    """One window's signals: a fired test with nested details, a quiet one, a skipped one, an accuracy
    interval and a NaN statistic."""
    return [
        Signal(
            SignalName.DOMAIN_CLASSIFIER,
            SignalKind.INPUT,
            statistic=0.62 + 0.02 * day if drift else 0.51,
            p_value=1e-6 if drift else 0.4,
            q_value=2.5e-5 if drift else 0.6,
            fired=drift,
            n_window=500,
            n_reference=2000,
            sampling_error=0.012,
            detail={
                "tokens": [{"token": "crypto", "weight": 1.7}, {"token": EVIL, "weight": np.float64(0.9)}],
                "auc": {"value": 0.64, "low": 0.6, "high": 0.68},
                "folds": np.array([0.61, 0.66]),
                "note": PIPE,
            },
        ),
        Signal(SignalName.CONFIDENCE, SignalKind.PREDICTION, statistic=0.03, p_value=0.2, q_value=0.45),
        Signal(SignalName.EMBEDDING_MMD, SignalKind.INPUT, skipped="the model has no embedding sample"),
        Signal(
            SignalName.ACCURACY_FEEDBACK,
            SignalKind.QUALITY,
            statistic=0.9 - 0.01 * day,
            interval=(0.86 - 0.01 * day, 0.94 - 0.01 * day),
            n_window=120,
            detail={"stratified": 0.88, "naive": 0.91, "by_tenant": {"acme": {"n": 80, "accuracy": 0.9}}},
        ),
        Signal(SignalName.TEXT_LENGTH, SignalKind.INPUT, statistic=math.nan, p_value=None),
    ]


def window(tenant: str | None, day: int, *, drift: bool) -> WindowResult:
    return WindowResult(
        tenant=tenant,
        start=T0 + (day - 1) * DAY,
        end=T0 + day * DAY,
        decisions=500 if tenant is None else 60,
        signals=signals(day, drift=drift),
        model_versions={"3": 480, "2": 20} if tenant is None else {"3": 60},
    )


def result(day: int = 10) -> MonitorResult:
    return MonitorResult(
        model_name="triage",
        model_version="3",
        since=T0 + (day - 1) * DAY,
        until=T0 + day * DAY,
        started_at=T0 + day * DAY + timedelta(minutes=1),
        finished_at=T0 + day * DAY + timedelta(minutes=2),
        alpha=0.05,
        windows=[
            window(EVIL, day, drift=True),
            window(None, day, drift=True),
            window(PIPE, day, drift=False),
        ],
        reference_accuracy=0.92,
    )


def history(runs: int) -> list[MonitorRunRecord]:
    """``runs`` stored all-tenant runs before day 10, plus a tenant's run that the plots must not read."""
    records = []
    for day in range(10 - runs, 10):
        past = result(day)
        overall = window(None, day, drift=day >= 8)
        records.append(
            MonitorRunRecord(
                started_at=past.started_at,
                finished_at=past.finished_at,
                since=past.since,
                until=past.until,
                tenant=None,
                model_name="triage",
                model_version="2" if day < 5 else "3",
                decisions=overall.decisions,
                fired=bool(overall.fired),
                result={"alpha": 0.05, **overall.to_dict()},
            )
        )
    if runs:
        tenant = window("acme", 9, drift=True)
        records.append(
            MonitorRunRecord(
                started_at=T0,
                finished_at=T0,
                since=T0,
                until=T0 + DAY,
                tenant="acme",
                model_name="triage",
                model_version="3",
                decisions=60,
                fired=True,
                result={"alpha": 0.05, **tenant.to_dict()},
            )
        )
    return records


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def images_of(html: str) -> list[str]:
    parser = _Tags()
    parser.feed(html)
    return [str(attrs.get("src")) for tag, attrs in parser.tags if tag == "img"]


def test_both_files_are_written_with_the_three_figures(tmp_path: Path) -> None:
    html_path, md_path = write_monitor_report(result(), history(9), tmp_path / "out")
    assert (html_path.name, md_path.name) == ("monitor.html", "monitor.md")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["monitor.html", "monitor.md"]
    html = html_path.read_text(encoding="utf-8")
    images = images_of(html)
    assert len(images) == 3  # statistics, q-values, accuracy
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert md_path.read_text(encoding="utf-8").startswith("# Monitor report: models:/triage/3")


def test_html_escapes_tenant_names_and_details() -> None:
    html = render_html(result(), history(9))
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html
    assert "tenant &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in html  # the separating token, in its table


def test_markdown_escapes_pipes_and_html_in_cells() -> None:
    text = render_markdown(result(), history(9))
    assert "<script" not in text
    assert "## tenant a\\|b" in text
    assert "| note | a\\|b |" in text
    assert "| &lt;script&gt;alert(1)&lt;/script&gt; | 0.9 |" in text
    assert "\n\n\n" not in text
    rows = [line for line in text.splitlines() if line.startswith("| domain_classifier |")]
    assert len(rows) == 3  # one per window, every row with the table's ten cells
    assert all(len(re.split(r"(?<!\\)\|", row)) == 12 for row in rows)


def test_windows_are_ordered_all_tenants_first_and_tables_carry_every_column() -> None:
    text = render_markdown(result(), history(0))
    headings = re.findall(r"^## (all tenants|tenant .*)$", text, flags=re.MULTILINE)
    assert headings == ["all tenants", "tenant &lt;script&gt;alert(1)&lt;/script&gt;", "tenant a\\|b"]
    row = next(line for line in text.splitlines() if line.startswith("| domain_classifier |"))
    assert row == (
        "| domain_classifier | input | 0.82 | 1e-06 | 2.5e-05 | n/a | ±0.012 | 500 / 2,000 | **FIRED** |  |"
    )
    assert (
        "| embedding_mmd | input | n/a | n/a | n/a | n/a | n/a | 0 / 0 | no "
        "| the model has no embedding sample |" in text
    )
    assert "| text_length | input | n/a |" in text
    assert "| accuracy_feedback | quality | 0.8 | n/a | n/a | \\[0.76, 0.84\\] |" in text


def test_verdict_and_details_of_fired_signals() -> None:
    text = render_markdown(result(), history(0))
    assert "## Verdict: FIRED" in text
    assert "FIRED: 2 signal(s) in 2 window(s) (alpha 0.05, Benjamini–Hochberg over 6 tests)" in text
    assert "### domain_classifier: details" in text
    assert "| auc.value | 0.64 |" in text  # a small mapping of scalars flattens into facts
    assert "| folds | 0.61, 0.66 |" in text  # a numpy array is a list of plain values
    assert "| token | weight |" in text  # a list of records is a table
    assert "### confidence: details" not in text  # quiet signals carry no detail section


def stored(run: MonitorResult) -> MonitorRunRecord:
    """The record of ``run``'s all-tenant window, as the monitor saves it before writing the report."""
    overall = next(w for w in run.windows if w.tenant is None)
    return MonitorRunRecord(
        started_at=run.started_at,
        finished_at=run.finished_at,
        since=run.since,
        until=run.until,
        tenant=None,
        model_name=run.model_name,
        model_version=run.model_version,
        decisions=overall.decisions,
        fired=bool(overall.fired),
        result={"alpha": run.alpha, **overall.to_dict()},
    )


@pytest.mark.parametrize("runs", [[], [stored(result())]], ids=["no run", "only this run"])
def test_short_history_renders_without_plots(runs: list[MonitorRunRecord]) -> None:
    html = render_html(result(), runs)
    assert images_of(html) == []
    assert "need at least 2 all-tenant windows of this model; the history has 1 so far" in html
    text = render_markdown(result(), runs)
    assert "need at least 2 all-tenant windows of this model; the history has 1 so far" in text


def test_one_earlier_run_and_the_current_one_make_a_plot() -> None:
    html = render_html(result(), history(1))
    assert len(images_of(html)) == 3


def test_history_reads_only_all_tenant_windows_of_the_model_without_the_current_run_twice() -> None:
    current = result()
    earlier = history(9)
    again = stored(current)
    other_model = replace(again, model_name="other", started_at=T0)
    points = overall_history(current, [*earlier, again, other_model])
    assert [p.end for p in points] == [T0 + day * DAY for day in range(1, 11)]
    assert [p.model_version for p in points][:5] == ["2"] * 4 + ["3"]
    last = points[-1].signals["domain_classifier"]
    assert last.fired
    assert last.q_value == pytest.approx(2.5e-5)
    assert math.isnan(points[0].signals["text_length"].statistic)


def test_a_malformed_stored_run_is_read_as_far_as_it_goes() -> None:
    odd = MonitorRunRecord(
        started_at=T0,
        finished_at=T0,
        since=T0,
        until=T0 + DAY,
        tenant=None,
        model_name="triage",
        model_version="3",
        decisions=0,
        fired=False,
        result={
            "end": "not a date",
            "signals": [{"name": "confidence", "statistic": "x"}, 7, {"q_value": 1}],
        },
    )
    points = overall_history(result(), [odd])
    assert points[0].end == T0 + DAY
    assert math.isnan(points[0].signals["confidence"].statistic)
    assert list(points[0].signals) == ["confidence"]
    html = render_html(result(), [odd])
    assert len(images_of(html)) == 3


def test_detail_view_handles_any_shape() -> None:
    view = detail_view(
        {
            "mix": {f"intent_{i}": i / 100 for i in range(40)},
            "pairs": [("a", 1), ("b", 2, "extra")],
            "empty": [],
            "nested": {"deep": {"deeper": [1, 2]}},
            "by_intent": {
                "card": {"reference": 0.2, "estimated": 0.1},
                "loan": {"estimated": np.float32(0.5)},
            },
            "flag": True,
            "missing": None,
            "long": "x" * 500,
        }
    )
    facts = dict(view.facts)
    assert facts["empty"] == "-"
    assert facts["nested.deep.deeper"] == "1, 2"
    assert (facts["flag"], facts["missing"]) == ("yes", "-")
    assert len(facts["long"]) == 160
    mix, pairs, by_intent = view.tables
    assert (mix.columns, len(mix.rows), mix.more) == (["key", "value"], MAX_ROWS, 40 - MAX_ROWS)
    assert pairs.rows == [["a", "1", "-"], ["b", "2", "extra"]]
    assert by_intent.columns == ["key", "reference", "estimated"]
    assert by_intent.rows == [["card", "0.2", "0.1"], ["loan", "-", "0.5"]]


def test_headline_lines_name_the_fired_signals_with_q_values() -> None:
    assert headline_lines(result()) == [
        "all tenants    500 decisions: fired domain_classifier (q=2.5e-05); 1 skipped",
        "tenant <script>alert(1)</script> 60 decisions: fired domain_classifier (q=2.5e-05); 1 skipped",
        "tenant a|b     60 decisions: quiet; 1 skipped",
        "verdict        FIRED: 2 signal(s) in 2 window(s) (alpha 0.05, Benjamini–Hochberg over 6 tests)",
    ]


def test_headline_lines_give_the_range_when_a_scope_has_several_windows() -> None:
    run = replace(result(), windows=[window(None, 10, drift=False), window(None, 9, drift=True)])
    first, second, verdict = headline_lines(run)
    assert first.startswith(
        "all tenants    500 decisions in 2026-03-09T00:00:00+00:00..2026-03-10T00:00:00+00:00"
    )
    assert first.endswith(": fired domain_classifier (q=2.5e-05); 1 skipped")
    assert second.endswith("..2026-03-11T00:00:00+00:00: quiet; 1 skipped")
    assert verdict.startswith("verdict        FIRED: 1 signal(s) in 1 window(s)")


def test_a_quiet_run_says_so() -> None:
    quiet = replace(result(), windows=[window(None, 10, drift=False)])
    assert headline_lines(quiet)[-1].startswith("verdict        quiet: nothing fired in 1 window(s)")
    assert "## Verdict: quiet" in render_markdown(quiet, [])


def test_a_run_without_decisions_says_there_was_nothing_to_test() -> None:
    from datetime import UTC, datetime

    from deskpilot.monitoring.metrics import MonitorMetrics
    from deskpilot.monitoring.report import headline_lines
    from deskpilot.monitoring.result import MonitorResult

    now = datetime(2026, 12, 1, tzinfo=UTC)
    empty = MonitorResult("m", "3", now, now, now, now, 0.01, [], reference_accuracy=0.9)
    (verdict,) = headline_lines(empty)
    assert "nothing to test" in verdict
    assert "version 3" in verdict
    metrics = MonitorMetrics()
    metrics.update(empty)
    assert metrics.registry.get_sample_value("deskpilot_monitor_window_decisions", {"tenant": "*"}) == 0.0
