"""The shadow report's statistics, checked against numbers worked out by hand, and its rendering."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from scipy import stats

from deskpilot.domain import Route
from deskpilot.evaluation.significance import wilson
from deskpilot.rollout.render import headline_lines, render_html, render_markdown, write_report
from deskpilot.rollout.report import (
    SHIFT_EDGES,
    build_report,
    intent_agreement,
    paired_accuracy,
    route_matrix,
    shift_stats,
)
from deskpilot.store.records import ShadowPair

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
A, H = Route.AUTO, Route.HUMAN


def pair(
    i: int,
    champion: str,
    challenger: str,
    *,
    confidences: tuple[float, float] = (0.9, 0.9),
    routes: tuple[Route, Route] = (A, A),
    correct: str | None = None,
    tenant: str = "acme",
) -> ShadowPair:
    return ShadowPair(
        tenant=tenant,
        request_id=f"req-{i}",
        champion_version="1",
        champion_intent=champion,
        champion_confidence=confidences[0],
        champion_route=routes[0],
        challenger_version="2",
        challenger_intent=challenger,
        challenger_confidence=confidences[1],
        challenger_route=routes[1],
        correct_intent=correct,
        created_at=T0 + timedelta(seconds=i),
    )


def sample() -> list[ShadowPair]:
    """Ten requests worked through by hand below.

    | i | champion   | challenger | conf (ch, cl) | routes | feedback   |
    |---|------------|------------|---------------|--------|------------|
    | 0 | card       | card       | .90 .95       | A A    | card       |
    | 1 | card       | card       | .80 .70       | A H    | card       |
    | 2 | card       | lost       | .60 .90       | H A    | lost       |
    | 3 | card       | card       | .95 .95       | A A    | -          |
    | 4 | card       | card       | .50 .40       | H H    | -          |
    | 5 | lost       | lost       | .90 .80       | A A    | lost       |
    | 6 | lost       | card       | .70 .60       | A H    | lost       |
    | 7 | lost       | lost       | .40 .60       | H A    | card       |
    | 8 | top_up     | top_up     | .99 .99       | A A    | top_up     |
    | 9 | top_up     | refund     | .30 .20       | H H    | -          |
    """
    rows = [
        ("card", "card", (0.90, 0.95), (A, A), "card"),
        ("card", "card", (0.80, 0.70), (A, H), "card"),
        ("card", "lost", (0.60, 0.90), (H, A), "lost"),
        ("card", "card", (0.95, 0.95), (A, A), None),
        ("card", "card", (0.50, 0.40), (H, H), None),
        ("lost", "lost", (0.90, 0.80), (A, A), "lost"),
        ("lost", "card", (0.70, 0.60), (A, H), "lost"),
        ("lost", "lost", (0.40, 0.60), (H, A), "card"),
        ("top_up", "top_up", (0.99, 0.99), (A, A), "top_up"),
        ("top_up", "refund", (0.30, 0.20), (H, H), None),
    ]
    return [
        pair(i, a, b, confidences=c, routes=r, correct=f, tenant="acme" if i % 2 else "globex")
        for i, (a, b, c, r, f) in enumerate(rows)
    ]


def test_wilson_interval_matches_the_formula_and_scipy() -> None:
    # 8 of 10: p = .8, z² = 3.8415; centre (.8 + .19207) / 1.38415 = .71674, half .22657
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.49016, abs=1e-5)
    assert high == pytest.approx(0.94332, abs=1e-5)
    ci = stats.binomtest(8, 10).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert wilson(0, 10) == pytest.approx((0.0, 3.841459 / 13.841459), abs=1e-6)
    assert wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson(11, 10)


def test_agreement_overall_and_per_intent_by_hand() -> None:
    report = build_report(sample(), model_name="triage", challenger_version="2", min_count=3)
    assert report.compared == 10
    assert report.agreement.successes == 7  # rows 2, 6 and 9 disagree
    assert report.agreement.rate == pytest.approx(0.7)
    assert report.agreement.interval == pytest.approx(wilson(7, 10))
    assert report.tenants == 2
    assert report.champion_versions == {"1": 10}
    assert (report.first_at, report.last_at) == (T0, T0 + timedelta(seconds=9))
    # card 4/5 = .8, lost 2/3 = .667 (ranked, worst first); top_up 1/2 has fewer than 3: listed last
    rows = [(r.intent, r.agreement.successes, r.agreement.n, r.low_count) for r in report.by_intent]
    assert rows == [("lost", 2, 3, False), ("card", 4, 5, False), ("top_up", 1, 2, True)]
    assert [r.intent for r in report.ranked_intents] == ["lost", "card"]


def test_intents_tie_on_rate_rank_the_bigger_one_first() -> None:
    pairs = [pair(i, "a", "a" if i % 2 else "x") for i in range(4)]
    pairs += [pair(10 + i, "b", "b" if i % 2 else "x") for i in range(6)]
    assert [r.intent for r in intent_agreement(pairs, min_count=1)] == ["b", "a"]


def test_route_change_matrix_by_hand() -> None:
    routes = route_matrix(sample())
    assert routes.cells() == [[4, 2], [2, 2]]  # A→A: 0,3,5,8; A→H: 1,6; H→A: 2,7; H→H: 4,9
    assert (routes.changed, routes.total) == (4, 10)
    summary = routes.to_dict()
    assert summary["champion_auto_rate"] == pytest.approx(0.6)
    assert summary["challenger_auto_rate"] == pytest.approx(0.6)


def test_confidence_shift_by_hand() -> None:
    shift = shift_stats(sample())
    # challenger − champion: +.05 −.10 +.30 0 −.10 −.10 −.10 +.20 0 −.10
    shifts = [0.05, -0.10, 0.30, 0.0, -0.10, -0.10, -0.10, 0.20, 0.0, -0.10]
    assert shift.mean == pytest.approx(sum(shifts) / 10)  # −0.005
    assert shift.median == pytest.approx(-0.05)  # middle two of the sorted ten: −.10 and 0
    assert shift.mean_agreed == pytest.approx((0.05 - 0.10 + 0.0 - 0.10 - 0.10 + 0.20 + 0.0) / 7)
    assert shift.mean_disagreed == pytest.approx((0.30 - 0.10 - 0.10) / 3)
    assert sum(shift.counts) == 10
    assert len(shift.counts) == len(SHIFT_EDGES) - 1
    assert shift.edges[0] == -1.0
    assert shift.edges[-1] == 1.0
    bins = dict(zip(SHIFT_EDGES, shift.counts, strict=False))
    assert bins[-0.15] + bins[-0.1] == 5  # the five −0.10 shifts, on a bin edge up to rounding
    assert bins[0.3] + bins[0.25] == 1
    assert bins[0.0] + bins[0.05] == 3  # two zero shifts and the +0.05


def test_paired_accuracy_and_mcnemar_by_hand() -> None:
    paired = paired_accuracy(sample())
    assert paired is not None
    # with feedback: rows 0, 1, 2, 5, 6, 7, 8
    # champion right: 0, 1, 5, 6, 8 (5 of 7); challenger right: 0, 1, 2, 5, 8 (5 of 7); row 7: neither
    # only the champion right: row 6 (b = 1); only the challenger: row 2 (c = 1); exact test p = 1
    assert (paired.n, paired.champion.successes, paired.challenger.successes) == (7, 5, 5)
    assert paired.difference == 0.0
    assert (paired.test.only_champion_correct, paired.test.only_challenger_correct) == (1, 1)
    assert paired.test.method == "exact"
    assert paired.test.p_value == pytest.approx(1.0)
    assert paired_accuracy([pair(1, "a", "b")]) is None


def test_a_clear_difference_is_significant() -> None:
    pairs = [pair(i, "wrong", "right", correct="right") for i in range(30)]
    paired = paired_accuracy(pairs)
    assert paired is not None
    assert (paired.champion.successes, paired.challenger.successes) == (0, 30)
    assert paired.test.method == "chi2"
    assert paired.test.statistic == pytest.approx((30 - 1) ** 2 / 30)
    assert paired.test.p_value < 1e-6


def test_nothing_to_report_and_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="no shadow comparisons"):
        build_report([], model_name="triage", challenger_version="2")
    with pytest.raises(ValueError, match="min_count"):
        build_report(sample(), model_name="triage", challenger_version="2", min_count=0)


def test_json_shape_is_plain_and_complete() -> None:
    since = T0 - timedelta(days=1)
    data = build_report(sample(), model_name="triage", challenger_version="2", since=since).to_dict()
    assert data["compared"] == 10
    assert data["agreement"]["successes"] == 7
    assert data["routes"]["auto_to_human"] == 2
    assert data["feedback"]["mcnemar"]["p_value"] == pytest.approx(1.0)
    assert data["since"] == since.isoformat()
    assert math.isclose(sum(data["confidence_shift"]["histogram"]["counts"]), 10)
    assert {row["intent"] for row in data["by_intent"]} == {"card", "lost", "top_up"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def hostile() -> list[ShadowPair]:
    evil = "<script>alert(1)</script>|*x*$y$"
    return [pair(i, evil, evil if i % 3 else "plain", correct=evil) for i in range(12)]


def test_html_is_self_contained_escaped_and_has_the_three_figures() -> None:
    html = render_html(build_report(hostile(), model_name="triage", challenger_version="2"))
    parser = _Tags()
    parser.feed(html)
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == 3
    assert all(str(attrs["src"]).startswith("data:image/png;base64,") for attrs in images)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    ids = {attrs.get("id") for _, attrs in parser.tags}
    assert {"headline", "plots", "intents", "routes", "shift", "feedback"} <= ids


def test_markdown_escapes_cells_and_carries_the_tables() -> None:
    text = render_markdown(build_report(sample() + hostile(), model_name="triage", challenger_version="2"))
    assert text.startswith("# Shadow report: models:/triage/2")
    assert "<script>" not in text
    assert r"&lt;script&gt;alert(1)&lt;/script&gt;\|\*x\*$y$" in text
    assert "| auto | 16 | 2 |" in text  # A→A: the sample's 4 and the 12 hostile ones; A→H: 2
    assert "\n\n\n" not in text


def test_write_report_writes_both_files_atomically(tmp_path: Path) -> None:
    report = build_report(sample(), model_name="triage", challenger_version="2")
    html, md = write_report(tmp_path / "out", report)
    assert (html.name, md.name) == ("report.html", "report.md")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.md"]
    assert md.read_text(encoding="utf-8").startswith("# Shadow report")
    assert oct(html.stat().st_mode & 0o777) == "0o644"


def test_headline_lines_name_every_statistic() -> None:
    lines = headline_lines(build_report(sample(), model_name="triage", challenger_version="2", min_count=3))
    text = "\n".join(lines)
    assert lines[0] == "challenger    models:/triage/2"
    assert "models:/triage/1 (10)" in text
    assert "agreement     70.0% [39.7%, 89.2%] (95% Wilson)" in text
    assert "auto→human 2  human→auto 2" in text
    assert "feedback      7 requests: champion 71.4%" in text
    assert "least agreed  lost 67% (n=3), card 80% (n=5)" in text
