"""``deskpilot snapshot create|list|show|verify``: immutable, redacted, content-addressed dataset copies."""

from __future__ import annotations

from typing import Annotated

import typer

from deskpilot.cli.common import (
    DataArg,
    JsonOpt,
    LabelColumnOpt,
    LabelsFileOpt,
    MaxLengthOpt,
    MinPerClassOpt,
    PiiPatternOpt,
    TextColumnOpt,
    emit_json,
    reported_errors,
    state,
)
from deskpilot.data.snapshots import SnapshotStore
from deskpilot.data.splits import DEFAULT_VALIDATION_FRACTION
from deskpilot.workflows.datasets import load_and_validate, split_summary, store_snapshot

app = typer.Typer(help="Create and inspect dataset snapshots.", no_args_is_help=True)

SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the train/validation split.")]
FractionOpt = Annotated[
    float, typer.Option("--validation-fraction", min=0.01, max=0.99, help="Share of each label held out.")
]


@app.command("create")
def create(
    ctx: typer.Context,
    data: DataArg,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    max_text_length: MaxLengthOpt = None,
    min_per_class: MinPerClassOpt = None,
    labels: LabelsFileOpt = None,
    pii_pattern: PiiPatternOpt = None,
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Snapshot only the valid rows instead of failing.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Validate and redact DATA, then store it as an immutable snapshot; prints the digest."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        checked = load_and_validate(
            settings,
            data,
            text_column=text_column,
            label_column=label_column,
            max_text_length=max_text_length,
            min_per_class=min_per_class,
            labels_file=labels,
        )
        snapshot = store_snapshot(settings, checked, pii_patterns=pii_pattern, drop_invalid=drop_invalid)
    meta = snapshot.metadata
    if json_output:
        emit_json({"ok": True, "path": str(snapshot.path), **meta.to_dict()})
        return
    redacted = ", ".join(f"{k} {v}" for k, v in meta.redactions.items()) or "none"
    typer.echo(f"snapshot {meta.digest}")
    typer.echo(f"  {meta.rows:,} rows, {len(meta.label_counts)} labels, PII redacted: {redacted}")
    if meta.dropped_invalid_rows:
        typer.echo(f"  dropped {meta.dropped_invalid_rows:,} invalid rows")
    typer.echo(f"  stored at {snapshot.path}")


@app.command("list")
def list_snapshots(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """List stored snapshots, oldest first."""
    with reported_errors(as_json=json_output):
        snapshots = SnapshotStore(state(ctx).settings.snapshot_dir).all()
    if json_output:
        emit_json([s.metadata.to_dict() for s in snapshots])
        return
    if not snapshots:
        typer.echo("no snapshots yet: run `deskpilot snapshot create DATA`")
    for snap in snapshots:
        meta = snap.metadata
        typer.echo(
            f"{meta.digest[:12]}  {meta.created_at}  {meta.rows:>9,} rows  "
            f"{len(meta.label_counts):>4} labels  "
            f"{meta.source_file}"
        )


@app.command("show")
def show(
    ctx: typer.Context,
    digest: Annotated[str, typer.Argument(help="Snapshot digest or a unique prefix of it.")],
    seed: SeedOpt = 0,
    validation_fraction: FractionOpt = DEFAULT_VALIDATION_FRACTION,
    json_output: JsonOpt = False,
) -> None:
    """Show a snapshot's lineage, its split for SEED and the split's leakage check."""
    with reported_errors(as_json=json_output):
        snapshot = SnapshotStore(state(ctx).settings.snapshot_dir).get(digest)
        summary = split_summary(snapshot, seed=seed, validation_fraction=validation_fraction)
    meta = snapshot.metadata
    if json_output:
        emit_json({**meta.to_dict(), "split": summary})
        return
    typer.echo(f"snapshot {meta.digest}")
    typer.echo(f"  source    {meta.source_file} ({meta.source_format}, sha256 {meta.source_sha256[:12]})")
    typer.echo(
        f"  columns   text={meta.text_column!r} label={meta.label_column!r} → {', '.join(meta.columns)}"
    )
    typer.echo(
        f"  rows      {meta.rows:,} in {len(meta.label_counts)} labels (contract v{meta.contract_version})"
    )
    typer.echo(f"  created   {meta.created_at} by deskpilot {meta.deskpilot_version}")
    typer.echo(f"  redacted  {meta.redactions or 'none'}")
    leakage = summary["leakage"]
    typer.echo(
        f"  split     seed {seed}: {summary['train_rows']:,} train / "
        f"{summary['validation_rows']:,} validation ({summary['validation_labels']} labels) / "
        f"{summary['evaluation_rows']:,} frozen evaluation; leakage: "
        + ("none" if leakage["clean"] else f"{leakage['overlapping_texts']} shared texts")
    )


@app.command("verify")
def verify(
    ctx: typer.Context,
    digest: Annotated[str, typer.Argument(help="Snapshot digest or a unique prefix of it.")],
) -> None:
    """Recompute a snapshot's digest from its stored rows; exit 1 if it was modified."""
    with reported_errors():
        store = SnapshotStore(state(ctx).settings.snapshot_dir)
        snapshot = store.get(digest)
        store.verify(snapshot)
    typer.echo(f"snapshot {snapshot.digest[:12]}: intact")
