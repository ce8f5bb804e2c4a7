"""``deskpilot train``: validate → redact → snapshot → split → fit → calibrate → thresholds → register."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from deskpilot.cli import audit_cmds
from deskpilot.cli.common import (
    EXIT_FAILED,
    JsonOpt,
    LabelColumnOpt,
    PiiPatternOpt,
    TextColumnOpt,
    build_registry,
    emit_json,
    reported_errors,
    state,
)
from deskpilot.cli.data_cmds import render_report
from deskpilot.cli.eval_cmds import SuiteOpt, audit_gate, resolve_suite
from deskpilot.cli.snapshot_cmds import load_and_validate, store_snapshot
from deskpilot.config import Settings
from deskpilot.errors import UsageError
from deskpilot.evaluation.policy import load_policy
from deskpilot.models.families import FAMILIES
from deskpilot.store.audit import PROMOTE
from deskpilot.training.pipeline import RegisteredRun, train_and_register
from deskpilot.training.run import TrainingConfig

CODE_DIR = Path(__file__).resolve().parents[3]


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` overrides; values are read as JSON when they parse (numbers, lists), else as text."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def audit_training(settings: Settings, run: RegisteredRun) -> None:
    """The gate decision, and the promotion of a first version to champion, go in the audit chain."""
    audit_gate(settings, run.version.uri, run.decision)
    if run.became_champion:
        audit_cmds.record(
            settings,
            PROMOTE,
            run.version.uri,
            "first version to pass its gate becomes the champion",
            {"to": "champion", "gate": run.decision.outcome},
        )


def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Training data: .csv, .tsv, .jsonl or .parquet.")],
    model: Annotated[str, typer.Option("--model", help=f"Model family: {', '.join(FAMILIES)}.")] = "tfidf",
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and of every random step.")] = 0,
    name: Annotated[str | None, typer.Option("--name", help="Registered model name.")] = None,
    validation_fraction: Annotated[
        float, typer.Option("--validation-fraction", min=0.01, max=0.99, help="Share of each label held out.")
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
    json_output: JsonOpt = False,
) -> None:
    """Train a model family on DATA, register it, and print its URI (models:/NAME/VERSION)."""
    settings = state(ctx).settings

    def say(message: str) -> None:
        if not json_output:
            typer.echo(f"· {message}", err=True)

    with reported_errors(as_json=json_output):
        if model not in FAMILIES:
            raise UsageError(f"unknown model family {model!r}; choose one of {', '.join(FAMILIES)}")
        config = TrainingConfig(
            family=model,
            seed=seed,
            validation_fraction=validation_fraction,
            target_precision=target_precision or settings.target_precision,
            params=parse_params(param),
            cache_dir=settings.encoder_cache_dir,
        )
        rules = load_policy(policy)
        behavioral = resolve_suite(data, suite)
        say(f"validate {data}")
        table, report = load_and_validate(settings, data, text_column=text_column, label_column=label_column)
        if not report.ok and not drop_invalid:
            typer.echo(render_report(report), err=True)
            raise typer.Exit(EXIT_FAILED)
        snapshot = store_snapshot(
            settings, table, report, pii_patterns=pii_pattern, drop_invalid=drop_invalid
        )
        say(f"snapshot {snapshot.digest[:12]} ({snapshot.metadata.rows:,} rows, PII redacted)")
        run = train_and_register(
            snapshot,
            config,
            build_registry(settings),
            name=name or settings.model_name,
            code_dir=CODE_DIR,
            policy=rules,
            suite=behavioral,
            progress=say,
        )
    audit_training(settings, run)
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
    typer.echo(run.decision.table(), err=True)
    if run.alias is None:
        say(f"gate FAILED: {run.decision.reason()}; registered without an alias")
    elif run.became_champion:
        say("gate passed; first version of this model: it is now the champion")
    else:
        say("gate passed: it is the challenger (promote it through rollout)")
    typer.echo(run.version.uri)
