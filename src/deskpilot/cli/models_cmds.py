"""``deskpilot models list|show|card``: what the registry holds and where each version came from."""

from __future__ import annotations

from typing import Annotated

import typer

from deskpilot import tags
from deskpilot.cli.common import JsonOpt, emit_json, reported_errors, state
from deskpilot.errors import ModelNotFoundError
from deskpilot.registry.base import MODEL_CARD, REPORT_MD, ModelVersion
from deskpilot.workflows.build import build_registry, parse_model_uri

app = typer.Typer(help="Inspect registered models.", no_args_is_help=True)


def _summary(version: ModelVersion) -> dict[str, object]:
    return {
        "uri": version.uri,
        "family": version.family,
        "aliases": list(version.aliases),
        "created_at": version.created_at,
        "dataset_digest": version.tags.get(tags.DATASET_DIGEST),
        "threshold": version.tags.get(tags.THRESHOLD),
        "val_accuracy": version.metrics.get("val_accuracy"),
        "val_macro_f1": version.metrics.get("val_macro_f1"),
        "val_auto_coverage": version.metrics.get("val_auto_coverage"),
        "gate": version.tags.get(tags.GATE),
    }


@app.command("list")
def list_models(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Only this registered model.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """List registered versions, newest first, with their family, aliases and validation scores."""
    with reported_errors(as_json=json_output):
        versions = build_registry(state(ctx).settings).versions(name)
    if json_output:
        emit_json([_summary(v) for v in versions])
        return
    if not versions:
        typer.echo("no registered models yet: run `deskpilot train --data DATA --model tfidf`")
        return
    typer.echo(f"{'MODEL':<34} {'FAMILY':<9} {'ACC':>7} {'F1':>7} {'AUTO':>7}  {'DATA':<12}  ALIASES")
    for v in versions:
        acc, f1, auto = (v.metrics.get(k) for k in ("val_accuracy", "val_macro_f1", "val_auto_coverage"))
        typer.echo(
            f"{v.uri:<34} {v.family:<9} {_pct(acc):>7} {_pct(f1):>7} {_pct(auto):>7}  "
            f"{v.tags.get(tags.DATASET_DIGEST, '?')[:12]:<12}  {','.join(v.aliases)}"
        )


@app.command("show")
def show(
    ctx: typer.Context,
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS")],
    json_output: JsonOpt = False,
) -> None:
    """Show one version: family, metrics, dataset digest, threshold, lineage and aliases."""
    with reported_errors(as_json=json_output):
        version = build_registry(state(ctx).settings).get(parse_model_uri(model_uri))
    if json_output:
        emit_json(
            {**_summary(version), "run_id": version.run_id, "tags": version.tags, "metrics": version.metrics}
        )
        return
    typer.echo(f"{version.uri}  ({version.family})")
    typer.echo(f"  aliases     {', '.join(version.aliases) or '-'}")
    typer.echo(f"  created     {version.created_at}   run {version.run_id or '-'}")
    typer.echo(f"  data        snapshot {version.tags.get(tags.DATASET_DIGEST, '?')}")
    source, seed = version.tags.get(tags.SOURCE_FILE, "?"), version.tags.get(tags.SEED, "?")
    typer.echo(f"              from {source}, seed {seed}")
    typer.echo(
        f"  routing     auto when confidence ≥ {version.tags.get(tags.THRESHOLD, '?')} "
        f"(target precision {version.tags.get(tags.TARGET_PRECISION, '?')})"
    )
    commit = version.tags.get(tags.GIT_COMMIT, "?")
    short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    typer.echo(f"  code        deskpilot {version.tags.get(tags.VERSION, '?')} @ {short}")
    gate = version.tags.get(tags.GATE)
    if gate is not None:
        typer.echo(
            f"  gate        {gate.upper()} vs {version.tags.get(tags.GATE_CHAMPION, '?')}: "
            f"{version.tags.get(tags.GATE_REASON, '')}"
        )
    typer.echo("  validation")
    for key in sorted(version.metrics):
        typer.echo(f"    {key:<26} {version.metrics[key]:.4f}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


@app.command("card")
def card(
    ctx: typer.Context,
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS")],
    report: Annotated[
        bool, typer.Option("--report", help="Print the stored Markdown evaluation report instead.")
    ] = False,
) -> None:
    """Print the model card (or the evaluation report) stored with a version when it was registered."""
    filename = REPORT_MD if report else MODEL_CARD
    with reported_errors():
        registry = build_registry(state(ctx).settings)
        version = registry.get(parse_model_uri(model_uri))
        text = registry.document(version.name, version.version, filename)
        if text is None:
            raise ModelNotFoundError(f"{version.uri}: no {filename} was stored with this version")
    typer.echo(text, nl=False)
