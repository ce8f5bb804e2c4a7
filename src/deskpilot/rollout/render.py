"""The shadow report as console lines, a self-contained HTML page and a Markdown file.

Like the evaluation report (:mod:`deskpilot.evaluation.report`): package templates
(``templates/shadow_report.{html,md}.j2``) rendered over :class:`~deskpilot.rollout.report.ShadowReport`,
the HTML autoescaped with its figures as inline PNG data URIs (no script, no external URL), Markdown cells
escaped, both files written atomically.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from pathlib import Path

import jinja2

from deskpilot.domain import ModelRef
from deskpilot.evaluation.rendering import FILTERS, atomic_write, data_uri, template_environment
from deskpilot.evaluation.significance import ci
from deskpilot.rollout import plots
from deskpilot.rollout.report import PairedAccuracy, ShadowReport

HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"
CONSOLE_INTENTS = 5
LISTED_TENANTS = 20  # the feedback table lists the tenants with the most verdicts


def title_of(report: ShadowReport) -> str:
    return f"Shadow report: {uri(report, report.challenger_version)}"


def uri(report: ShadowReport, version: str) -> str:
    return ModelRef(report.model_name, version=version).uri


def champions(report: ShadowReport) -> str:
    return ", ".join(f"{uri(report, v)} ({n:,})" for v, n in report.champion_versions.items())


def tenant_summary(paired: PairedAccuracy) -> str:
    """Who gave the verdicts, and whether the test stands without the tenant it leans on most."""
    tenants = len(paired.by_tenant)
    share = paired.largest_share or 0.0
    if paired.without_one is None:
        return f"{tenants} tenant: one tenant's verdicts alone, nothing to check them against"
    left = paired.without_one
    return (
        f"{tenants} tenants, the largest gave {share:.0%}; without {left.tenant} "
        f"({left.n:,} left) McNemar p={left.test.p_value:.3g}"
    )


def headline_lines(report: ShadowReport) -> list[str]:
    """What ``deskpilot rollout report`` prints."""
    shift, routes = report.shift, report.routes
    since = f" since {_stamp(report.since)}" if report.since is not None else ""
    lines = [
        f"challenger    {uri(report, report.challenger_version)}",
        f"champion      {champions(report)}",
        f"compared      {report.compared:,} requests from {report.tenants} tenant(s), "
        f"{_stamp(report.first_at)} .. {_stamp(report.last_at)}{since}",
        f"agreement     {ci(report.agreement)} (95% Wilson)",
        f"confidence    challenger − champion: mean {shift.mean:+.3f}, median {shift.median:+.3f}, "
        f"5–95% [{shift.p05:+.3f}, {shift.p95:+.3f}]",
        f"routes        auto→auto {routes.auto_to_auto:,}  auto→human {routes.auto_to_human:,}  "
        f"human→auto {routes.human_to_auto:,}  human→human {routes.human_to_human:,}",
    ]
    paired = report.feedback
    if paired is None:
        lines.append("feedback      none on these requests yet")
    else:
        test = paired.test
        lines.append(
            f"feedback      {paired.n:,} requests: champion {ci(paired.champion)}, "
            f"challenger {ci(paired.challenger)}; McNemar p={test.p_value:.3g} ({test.method}, "
            f"{test.only_champion_correct} only champion right, {test.only_challenger_correct} only "
            "challenger right)"
        )
        lines.append(f"verdicts by   {tenant_summary(paired)}")
    worst = report.ranked_intents[:CONSOLE_INTENTS]
    if worst:
        listed = ", ".join(
            f"{row.intent} {row.agreement.rate or 0.0:.0%} (n={row.agreement.n})" for row in worst
        )
        lines.append(f"least agreed  {listed}")
    else:
        lines.append(f"least agreed  no intent with {report.min_count}+ comparisons yet")
    return lines


def render_html(report: ShadowReport, *, title: str | None = None) -> str:
    images = {
        "by_intent": plots.agreement_by_intent_chart(report.ranked_intents),
        "shift": plots.confidence_shift_histogram(report.shift),
        "routes": plots.route_change_heatmap(report.routes),
    }
    return (
        _environment()
        .get_template("shadow_report.html.j2")
        .render(**_context(report, title), images={name: data_uri(png) for name, png in images.items()})
    )


def render_markdown(report: ShadowReport, *, title: str | None = None) -> str:
    text = _environment().get_template("shadow_report.md.j2").render(**_context(report, title))
    return re.sub(r"\n{3,}", "\n\n", text)


def write_report(directory: Path, report: ShadowReport, *, title: str | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``directory``; each appears whole or not at all."""
    html, markdown = render_html(report, title=title), render_markdown(report, title=title)
    directory.mkdir(parents=True, exist_ok=True)
    html_path, md_path = directory / HTML_FILE, directory / MARKDOWN_FILE
    atomic_write(html_path, html)
    atomic_write(md_path, markdown)
    return html_path, md_path


def _context(report: ShadowReport, title: str | None) -> dict[str, object]:
    return {
        "r": report,
        "title": title or title_of(report),
        "challenger": uri(report, report.challenger_version),
        "champions": champions(report),
        "stamp": _stamp,
        "ranked": report.ranked_intents,
        "few": [row for row in report.by_intent if row.low_count],
        "tenant_summary": tenant_summary,
        "listed_tenants": LISTED_TENANTS,
    }


def _stamp(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


@functools.cache
def _environment() -> jinja2.Environment:
    return template_environment("deskpilot.rollout", {**FILTERS, "ci": ci})
