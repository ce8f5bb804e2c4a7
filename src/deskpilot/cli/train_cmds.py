"""``deskpilot train``: validate → redact → snapshot → split → fit → calibrate → thresholds → gate →
register → audit, all in :func:`deskpilot.workflows.training.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deskpilot.cli.common import (
    JsonOpt,
    LabelColumnOpt,
    PiiPatternOpt,
    SuiteOpt,
    TextColumnOpt,
    emit_json,
    parse_params,
    reported_errors,
    say_audited,
    state,
)
from deskpilot.models.families import FAMILIES
from deskpilot.workflows.training import TrainRequest
from deskpilot.workflows.training import train as train_model


def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Training data: .csv, .tsv, .jsonl or .parquet.")],
    model: Annotated[str, typer.Option("--model", help=f"Model family: {', '.join(FAMILIES)}.")] = "tfidf",
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and of every random step.")] = 0,
    name: Annotated[str | None, typer.Option("--name", help="Registered model name.")] = None,
    validation_fraction: Annotated[
        float,
        typer.Option(
            "--validation-fraction",
            min=0.01,
            max=0.99,
            help="Share of each label held out for validation, of the rows outside the evaluation split.",
        ),
    ] = 0.2,
    target_precision: Annotated[
        float | None, typer.Option("--target-precision", min=0.01, max=1.0, help="Precision of auto routes.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Hyperparameter KEY=VALUE; repeatable.")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Gate policy (YAML) [default: the packaged policy].")
    ] = None,
    suite: SuiteOpt = None,
    pii_pattern: PiiPatternOpt = None,
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Train on the valid rows only.")
    ] = False,
    exclude_flagged: Annotated[
        Path | None,
        typer.Option(
            "--exclude-flagged",
            help="A label audit's JSON (deskpilot data audit-labels): its flagged rows are not trained on.",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Train a model family on DATA, register it, and print its URI (models:/NAME/VERSION)."""
    settings = state(ctx).settings

    def say(message: str) -> None:
        if not json_output:
            typer.echo(f"· {message}", err=True)

    with reported_errors(as_json=json_output):
        request = TrainRequest(
            data=data,
            family=model,
            text_column=text_column,
            label_column=label_column,
            seed=seed,
            name=name,
            validation_fraction=validation_fraction,
            target_precision=target_precision,
            params=parse_params(param),
            policy_file=policy,
            suite_file=suite,
            pii_patterns=pii_pattern,
            drop_invalid=drop_invalid,
            exclude_flagged=exclude_flagged,
        )
        outcome = train_model(settings, request, progress=say)
    say_audited(outcome.audit)
    run, snapshot, config = outcome.run, outcome.snapshot, outcome.config
    metrics = run.result.metrics
    routing = run.result.model.manifest.routing
    if json_output:
        emit_json(
            {
                "ok": True,
                "uri": run.version.uri,
                "aliases": list(run.version.aliases),
                "gate": run.decision.to_dict(),
                "family": model,
                "dataset_digest": snapshot.digest,
                "metrics": metrics,
                "evaluation": {name: interval.value for name, interval in run.evaluation.headline.items()},
                "routing": routing,
            }
        )
        return
    threshold = (
        "none (nothing auto-routed)" if routing["threshold"] is None else f"{routing['threshold']:.4f}"
    )
    say(
        f"validation: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"ECE {metrics['ece']:.4f}, auto {metrics['auto_coverage']:.1%} at ≥{config.target_precision:.0%} "
        f"precision (threshold {threshold}); fit {run.result.fit_seconds:.1f}s"
    )
    held_out = run.evaluation.headline
    say(
        f"frozen evaluation split ({run.evaluation.data['rows']:,} rows never trained on): accuracy "
        f"{held_out['accuracy'].value:.4f}, macro-F1 {held_out['macro_f1'].value:.4f}, "
        f"ECE {held_out['ece'].value:.4f}, auto {held_out['auto_coverage'].value:.1%}"
    )
    if run.decision.rows is not None:
        say(f"compared with the champion on {run.decision.rows.describe()}")
    typer.echo(run.decision.table(), err=True)
    if run.alias is None:
        say(f"gate FAILED: {run.decision.reason()}; registered without an alias")
    elif run.became_champion:
        say("gate passed; first version of this model: it is now the champion")
    else:
        say("gate passed: it is the challenger (promote it through rollout)")
    typer.echo(run.version.uri)
