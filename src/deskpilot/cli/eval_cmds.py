"""``deskpilot evaluate`` and ``deskpilot gate``: measure a registered version, decide whether it ships."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from deskpilot.cli import audit_cmds
from deskpilot.cli.common import (
    EXIT_FAILED,
    JsonOpt,
    LabelColumnOpt,
    PiiPatternOpt,
    TextColumnOpt,
    build_redactor,
    build_registry,
    emit_json,
    parse_model_uri,
    reported_errors,
    state,
)
from deskpilot.cli.data_cmds import render_report
from deskpilot.cli.snapshot_cmds import load_and_validate
from deskpilot.config import Settings
from deskpilot.domain import ModelRef
from deskpilot.errors import UsageError
from deskpilot.evaluation.behavioral import BehavioralSuite, GeneratedSpec, load_suite
from deskpilot.evaluation.evaluate import Evaluation, EvaluationData, EvaluationOptions, evaluate
from deskpilot.evaluation.gate import GateDecision, decide
from deskpilot.evaluation.policy import load_policy
from deskpilot.evaluation.report import write_report
from deskpilot.registry.base import CHAMPION, ModelRegistry, ModelVersion
from deskpilot.store.audit import GATE

SUITE_FILE = "behavioral.yaml"

SuiteOpt = Annotated[
    Path | None,
    typer.Option(
        "--suite",
        help=f"Behavioral suite (YAML) [default: {SUITE_FILE} beside the data, else generated cases].",
    ),
]
ReportOpt = Annotated[Path | None, typer.Option("--report", help="Write report.html and report.md here.")]
BootstrapOpt = Annotated[int | None, typer.Option("--bootstrap", min=100, help="Bootstrap resamples.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap and generated perturbations.")]


def resolve_suite(data: Path, suite: Path | None) -> BehavioralSuite:
    """The suite named, else the one stored beside the data, else generated perturbations only."""
    if suite is not None:
        return load_suite(suite)
    beside = data.with_name(SUITE_FILE)
    if beside.is_file():
        return load_suite(beside)
    return BehavioralSuite(source="<generated perturbations>", generated=GeneratedSpec())


def load_evaluation_data(
    settings: Settings, data: Path, *, text_column: str, label_column: str, pii_pattern: list[str] | None
) -> EvaluationData:
    """Read and check labelled data (any label count per class), then redact it as the service would."""
    table, report = load_and_validate(
        settings, data, text_column=text_column, label_column=label_column, min_per_class=1
    )
    if not report.ok:
        typer.echo(render_report(report), err=True)
        raise typer.Exit(EXIT_FAILED)
    frame = table.frame
    texts, _ = build_redactor(pii_pattern).redact_many(frame[text_column].astype(str).str.strip().tolist())
    extras = {
        str(c): frame[c].astype(str).tolist() for c in frame.columns if c not in (text_column, label_column)
    }
    return EvaluationData(
        texts=texts,
        labels=frame[label_column].astype(str).str.strip().tolist(),
        source=str(data),
        extras=extras,
    )


def _evaluate_version(
    registry: ModelRegistry,
    ref: ModelRef,
    data: EvaluationData,
    suite: BehavioralSuite,
    options: EvaluationOptions,
) -> Evaluation:
    version = registry.get(ref)
    model = registry.load(ref)
    info = {"name": version.name, "uri": version.uri, "aliases": list(version.aliases)}
    try:
        return evaluate(model, data, model_info=info, suite=suite, options=options)
    except ValueError as exc:
        raise UsageError(f"{version.uri} on {data.source}: {exc}") from exc


def _champion_ref(registry: ModelRegistry, ref: ModelRef) -> ModelRef | None:
    """The champion to compare against, unless there is none or it is the model itself."""
    champion = registry.alias_version(ref.name, CHAMPION)
    if champion is None or champion == registry.get(ref).version:
        return None
    return ModelRef(ref.name, version=champion)


@dataclass(frozen=True)
class _Scored:
    registry: ModelRegistry
    version: ModelVersion
    evaluation: Evaluation
    champion: Evaluation | None


def _score(
    settings: Settings,
    model_uri: str,
    data: Path,
    *,
    text_column: str,
    label_column: str,
    pii_pattern: list[str] | None,
    suite: Path | None,
    options: EvaluationOptions,
    with_champion: bool,
) -> _Scored:
    """Evaluate the model (and, when asked, the current champion) on the same redacted rows."""
    ref = parse_model_uri(model_uri)
    registry = build_registry(settings)
    version = registry.get(ref)
    rows = load_evaluation_data(
        settings, data, text_column=text_column, label_column=label_column, pii_pattern=pii_pattern
    )
    behavioral = resolve_suite(data, suite)
    evaluation = _evaluate_version(registry, ref, rows, behavioral, options)
    champion_ref = _champion_ref(registry, ref) if with_champion else None
    champion = None
    if champion_ref is not None:
        champion = _evaluate_version(registry, champion_ref, rows, behavioral, options)
    return _Scored(registry, version, evaluation, champion)


def evaluate_command(
    ctx: typer.Context,
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS")],
    data: Annotated[Path, typer.Option("--data", help="Labelled data: .csv, .tsv, .jsonl or .parquet.")],
    report: ReportOpt = None,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    suite: SuiteOpt = None,
    compare: Annotated[
        bool, typer.Option("--compare/--no-compare", help="Evaluate the champion beside it in the report.")
    ] = True,
    bootstrap: BootstrapOpt = None,
    seed: SeedOpt = 0,
    cpu_hour_price: Annotated[
        float, typer.Option("--cpu-hour-price", min=0.0, help="Price of one CPU-hour, for cost per 1,000.")
    ] = EvaluationOptions.cpu_hour_price,
    pii_pattern: PiiPatternOpt = None,
) -> None:
    """Evaluate a registered model on labelled DATA; metrics JSON on stdout, optional HTML/Markdown report."""
    settings = state(ctx).settings
    with reported_errors(as_json=True):
        options = EvaluationOptions(
            n_boot=bootstrap or EvaluationOptions.n_boot, seed=seed, cpu_hour_price=cpu_hour_price
        )
        scored = _score(
            settings,
            model_uri,
            data,
            text_column=text_column,
            label_column=label_column,
            pii_pattern=pii_pattern,
            suite=suite,
            options=options,
            with_champion=compare and report is not None,  # the champion only appears in the report
        )
        payload = scored.evaluation.to_dict()
        if report is not None:
            title = f"{model_uri} on {data.name}"
            html, markdown = write_report(report, scored.evaluation, scored.champion, None, title=title)
            payload["report"] = {"html": str(html), "markdown": str(markdown)}
    emit_json(payload)


def gate_command(
    ctx: typer.Context,
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS")],
    data: Annotated[Path, typer.Option("--data", help="Labelled data: .csv, .tsv, .jsonl or .parquet.")],
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Gate policy (YAML) [default: the packaged policy].")
    ] = None,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    suite: SuiteOpt = None,
    report: ReportOpt = None,
    seed: SeedOpt = 0,
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", help="Store the decision with the version in the registry."),
    ] = True,
    pii_pattern: PiiPatternOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Apply the gate policy to a registered model on DATA against the champion; exit 0 pass, 1 fail."""
    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        rules = load_policy(policy)
        options = EvaluationOptions(
            n_boot=rules.bootstrap, seed=seed, per_class_min_support=rules.per_class_min_support
        )
        scored = _score(
            settings,
            model_uri,
            data,
            text_column=text_column,
            label_column=label_column,
            pii_pattern=pii_pattern,
            suite=suite,
            options=options,
            with_champion=True,
        )
        version = scored.version
        decision = decide(scored.evaluation, scored.champion, rules, seed=seed)
        if record:
            _record(scored.registry, version.name, version.version, decision)
            audit_gate(settings, version.uri, decision)
        if report is not None:
            title = f"gate: {version.uri} on {data.name}"
            write_report(report, scored.evaluation, scored.champion, decision, title=title)
    if json_output:
        emit_json(decision.to_dict())
    else:
        typer.echo(_render(decision, version.uri))
    if not decision.passed:
        raise typer.Exit(EXIT_FAILED)


def _record(registry: ModelRegistry, name: str, version: str, decision: GateDecision) -> None:
    stamp = decision.decided_at.replace(":", "").replace("-", "")
    registry.annotate(
        name,
        version,
        tags={**decision.tags(), "deskpilot.gate_at": decision.decided_at},
        documents={f"gate_decision-{stamp}.json": json.dumps(decision.to_dict(), indent=2, default=str)},
    )


def audit_gate(settings: Settings, uri: str, decision: GateDecision) -> None:
    """Gate decisions belong in the audit chain beside the promotions they allow."""
    payload = {
        "outcome": decision.outcome,
        "policy": decision.policy,
        "champion": (decision.champion or {}).get("uri"),
        "failed_rules": [f"{r.kind} {r.metric}" for r in decision.failures],
        "compared_rows": decision.compared_rows,
    }
    audit_cmds.record(settings, GATE, uri, decision.reason()[:500], payload)


def _render(decision: GateDecision, uri: str) -> str:
    against = (decision.champion or {}).get("uri") or "no champion"
    lines = [
        f"gate {decision.outcome.upper()}: {uri} vs {against} "
        f"(policy {decision.policy}; {decision.compared_rows:,} paired rows)",
        "",
        decision.table(),
        "",
        f"reason: {decision.reason()}",
    ]
    return "\n".join(lines)
