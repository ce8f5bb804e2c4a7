"""``deskpilot demo``: the main job end to end on a dataset (the bundled Banking77 by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deskpilot.cli.common import EXIT_FAILED, LabelColumnOpt, TextColumnOpt, reported_errors, state
from deskpilot.cli.data_cmds import render_report
from deskpilot.cli.snapshot_cmds import load_and_validate, split_summary, store_snapshot

BUNDLED_DATA = Path("data/banking77/train.csv")


def demo(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Dataset to run on.")] = BUNDLED_DATA,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "category",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/validation split.")] = 0,
) -> None:
    """Validate the data, snapshot it (redacted, content-addressed) and show its reproducible split."""
    settings = state(ctx).settings
    with reported_errors():
        typer.echo(f"[1/3] validate {data}")
        table, report = load_and_validate(settings, data, text_column=text_column, label_column=label_column)
        typer.echo(render_report(report))
        if not report.ok:
            raise typer.Exit(EXIT_FAILED)
        typer.echo("[2/3] snapshot (PII redacted, content-addressed)")
        snapshot = store_snapshot(settings, table, report)
        meta = snapshot.metadata
        typer.echo(f"  digest {meta.digest}")
        typer.echo(
            f"  {meta.rows:,} rows, {len(meta.label_counts)} labels, redactions {meta.redactions or 'none'}"
        )
        typer.echo(f"  stored at {snapshot.path}")
        typer.echo(f"[3/3] split (seed {seed}) and leakage check")
        summary = split_summary(snapshot, seed=seed, validation_fraction=0.2)
        leakage = summary["leakage"]
        typer.echo(
            f"  {summary['train_rows']:,} train / {summary['validation_rows']:,} validation rows across "
            f"{summary['validation_labels']} labels; "
            f"texts shared between splits: {leakage['overlapping_texts']}"
        )
    typer.echo("demo complete: next, `deskpilot snapshot show " + meta.digest[:12] + "`")
