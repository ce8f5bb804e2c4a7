"""``deskpilot models list|show|card``: what the registry holds and where each version came from."""

from __future__ import annotations

from typing import Annotated

import typer

from deskpilot.cli.common import JsonOpt, build_registry, emit_json, parse_model_uri, reported_errors, state
from deskpilot.errors import ModelNotFoundError
from deskpilot.registry.base import MODEL_CARD, REPORT_MD, ModelVersion

app = typer.Typer(help="Inspect registered models.", no_args_is_help=True)


def _summary(version: ModelVersion) -> dict[str, object]:
    return {
        "uri": version.uri,
        "family": version.family,
        "aliases": list(version.aliases),
        "created_at": version.created_at,
        "dataset_digest": version.tags.get("deskpilot.dataset_digest"),
        "threshold": version.tags.get("deskpilot.threshold"),
        "val_accuracy": version.metrics.get("val_accuracy"),
        "val_macro_f1": version.metrics.get("val_macro_f1"),
        "val_auto_coverage": version.metrics.get("val_auto_coverage"),
        "gate": version.tags.get("deskpilot.gate"),
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
            f"{v.tags.get('deskpilot.dataset_digest', '?')[:12]:<12}  {','.join(v.aliases)}"
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
    typer.echo(f"  data        snapshot {version.tags.get('deskpilot.dataset_digest', '?')}")
    source, seed = version.tags.get("deskpilot.source_file", "?"), version.tags.get("deskpilot.seed", "?")
    typer.echo(f"              from {source}, seed {seed}")
    typer.echo(
        f"  routing     auto when confidence ≥ {version.tags.get('deskpilot.threshold', '?')} "
        f"(target precision {version.tags.get('deskpilot.target_precision', '?')})"
    )
    commit = version.tags.get("deskpilot.git_commit", "?")
    short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    typer.echo(f"  code        deskpilot {version.tags.get('deskpilot.version', '?')} @ {short}")
    gate = version.tags.get("deskpilot.gate")
    if gate is not None:
        typer.echo(
            f"  gate        {gate.upper()} vs {version.tags.get('deskpilot.gate_champion', '?')}: "
            f"{version.tags.get('deskpilot.gate_reason', '')}"
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
