"""``deskpilot monitor``: drift, label shift and quality of the champion's logged decisions against its
reference profile. Exit 0 when no signal fired, 1 when one did (or the run failed: the message says which),
2 for a usage error, like ``gate``; a scheduler or CI job can act on the status alone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from deskpilot.cli.common import EXIT_FAILED, JsonOpt, emit_json, parse_time, reported_errors, state
from deskpilot.errors import UsageError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def monitor(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Start of the range, ISO-8601 (UTC unless it says) [default: until - 1 day]."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="End of the range, ISO-8601, exclusive [default: now].")
    ] = None,
    last: Annotated[
        str | None,
        typer.Option(
            "--last", help="The range is the last DURATION before --until (1h, 30m, 1d); for cron jobs."
        ),
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's decisions.")] = None,
    json_output: JsonOpt = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write monitor.html and monitor.md into this folder.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="The version to watch, models:/NAME/VERSION or @ALIAS [default: champion]."
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Cut the range into windows: a duration (30m, 1h, 1d) or a number of decisions (5000) "
            "[default: one window].",
        ),
    ] = None,
    per_tenant: Annotated[
        bool, typer.Option("--per-tenant/--overall-only", help="Also test each tenant's decisions alone.")
    ] = True,
    alpha: Annotated[
        float,
        typer.Option("--alpha", min=1e-6, max=0.5, help="False discovery rate across the run's tests."),
    ] = 0.01,
    embedding: Annotated[
        bool,
        typer.Option("--embedding/--no-embedding", help="The MMD test on encoder embeddings (the slow one)."),
    ] = True,
    textfile: Annotated[
        Path | None,
        typer.Option(
            "--textfile", help="Also write the gauges for node_exporter's textfile collector (.prom)."
        ),
    ] = None,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="Store the run in the monitor history.")
    ] = True,
) -> None:
    """Drift, label shift and quality signals over a range of logged decisions (exit 1 when one fires)."""
    from deskpilot.monitoring.report import headline_lines
    from deskpilot.monitoring.run import MonitorConfig
    from deskpilot.workflows import monitor as monitoring

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        every, count = parse_window(window)
        start, end = parse_time(since, "--since"), parse_time(until, "--until")
        if last is not None:
            if start is not None:
                raise UsageError("--last and --since both set where the range starts: give one")
            start = (end or datetime.now(UTC)) - parse_duration(last, "--last")
        request = monitoring.MonitorRequest(
            since=start,
            until=end,
            tenant=tenant,
            model_uri=model,
            every=every,
            count=count,
            per_tenant=per_tenant,
            report_dir=report,
            textfile=textfile,
            record=record,
            config=MonitorConfig(alpha=alpha, embedding=embedding),
        )
        outcome = monitoring.run(settings, request)
    result = outcome.result
    if json_output:
        written = (
            None
            if outcome.files is None
            else {"html": str(outcome.files[0]), "markdown": str(outcome.files[1])}
        )
        emit_json({"ok": True, **result.to_dict(), "run_ids": outcome.run_ids, "files": written})
    else:
        for line in headline_lines(result):
            typer.echo(line)
        if outcome.files is not None:
            typer.echo(f"report  {outcome.files[0]}, {outcome.files[1]}")
    if result.fired:
        raise typer.Exit(EXIT_FAILED)


def parse_window(text: str | None) -> tuple[timedelta | None, int | None]:
    """``1h`` → a time window; ``5000`` → a count window; nothing → one window over the range."""
    if text is None:
        return None, None
    value = text.strip()
    if value.isascii() and value.isdigit():
        if int(value) < 1:
            raise UsageError("--window: a count window needs at least one decision")
        return None, int(value)
    return parse_duration(value, "--window", or_count=True), None


def parse_duration(text: str, option: str, *, or_count: bool = False) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None or float(match[1]) <= 0:
        wanted = "a duration (30m, 1h, 1d)" + (" or a number of decisions (5000)" if or_count else "")
        raise UsageError(f"{option} {text!r}: give {wanted}")
    return timedelta(**{_UNITS[match[2]]: float(match[1])})
