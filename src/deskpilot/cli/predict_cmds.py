"""``deskpilot predict``: batch scoring of a file or a folder of parts with a registered model, on this
process (``--engine local``) or on Ray (``--engine ray``); with ``--challenger``, a second model scores the
same rows for an offline comparison report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from deskpilot.batch.predict import DEFAULT_BATCH_ROWS
from deskpilot.cli.common import JsonOpt, PiiPatternOpt, TextColumnOpt, emit_json, reported_errors, state
from deskpilot.evaluation.comparison import summary_lines
from deskpilot.workflows.scoring import BatchJob, score_batch


def predict(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="models:/NAME/VERSION, models:/NAME@ALIAS, or @ALIAS (e.g. @champion) of the configured "
            "model, to follow the rollout.",
        ),
    ],
    input_path: Annotated[
        Path,
        typer.Option(
            "--input", help="Messages to score: a .csv/.tsv/.jsonl/.parquet file or a folder of such parts."
        ),
    ],
    output_path: Annotated[
        Path,
        typer.Option(
            "--output",
            help="Where the scores go: a file (format by extension) for --engine local, a folder of "
            "Parquet parts for --engine ray.",
        ),
    ],
    text_column: TextColumnOpt = "text",
    id_column: Annotated[
        str, typer.Option("--id-column", help="Column copied through as `id` when present.")
    ] = "id",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows per model call.")
    ] = DEFAULT_BATCH_ROWS,
    pii_pattern: PiiPatternOpt = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local: this process; ray: Ray Data (the [ray] extra).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Join this Ray cluster (e.g. ray://head:10001); else start one."),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(
            "--ray-workers",
            min=1,
            help="Actors scoring at once (default: one per CPU but one, left for reading and writing).",
        ),
    ] = None,
    challenger: Annotated[
        str | None,
        typer.Option(
            "--challenger",
            help="A second model scoring the same rows (models:/NAME/VERSION, @ALIAS, or `rollout` for the "
            "version in shadow or canary now); adds challenger_intent, challenger_confidence, "
            "challenger_route and agrees.",
        ),
    ] = None,
    label_column: Annotated[
        str,
        typer.Option(
            "--label-column", help="With --challenger: the column of true intents, for each model's accuracy."
        ),
    ] = "label",
    report_dir: Annotated[
        Path | None,
        typer.Option("--report", help="With --challenger: write comparison.{json,md,html} to this folder."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Score INPUT with MODEL into OUTPUT: intent, confidence, route and alternatives per row."""
    settings = state(ctx).settings
    job = BatchJob(
        model,
        input_path,
        output_path,
        text_column,
        id_column,
        batch_size,
        pii_pattern,
        engine=engine,
        ray_address=ray_address,
        ray_workers=ray_workers,
        progress=not json_output,
        challenger_uri=challenger,
        label_column=label_column,
        report_dir=report_dir,
    )
    with (
        reported_errors(as_json=json_output),
        Progress(
            TextColumn("scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
            disable=json_output,
        ) as bar,
    ):
        task = bar.add_task("score", total=None)
        summary = score_batch(
            settings,
            job,
            on_total=lambda total: bar.update(task, total=total),
            on_rows=lambda n: bar.advance(task, n),
        )
    result = {
        "ok": True,
        "model": model,
        "engine": engine,
        "output": str(summary.output),
        "rows": summary.rows,
        "auto_rows": summary.auto_rows,
        "unscorable_rows": summary.unscorable_rows,
        "seconds": round(summary.seconds, 3),
        "rows_per_second": round(summary.rows_per_second, 1),
    }
    if summary.comparison is not None:
        result["comparison"] = summary.comparison.to_dict()
        result["report"] = None if report_dir is None else str(report_dir)
    if json_output:
        emit_json(result)
        return
    share = summary.auto_rows / summary.rows if summary.rows else 0.0
    typer.echo(
        f"scored {summary.rows:,} rows in {summary.seconds:.1f}s ({summary.rows_per_second:,.0f}/s): "
        f"{summary.auto_rows:,} auto ({share:.1%}), {summary.unscorable_rows:,} unscorable → {summary.output}"
    )
    if summary.comparison is not None:
        for line in summary_lines(summary.comparison):
            typer.echo(line)
        if report_dir is not None:
            typer.echo(f"comparison report → {report_dir}")
