"""Train, evaluate, gate, register: the second half of ``deskpilot train`` once the data is snapshotted.

The new version is evaluated on its lineage's frozen evaluation split (ADR 0019), which it never trained or
tuned on, and the gate compares it with the current champion on those rows less any the champion trained on:
none when the champion shares the lineage's split (any seed, any growth of the lineage by feedback); the
overlap is left out, and counted, when the champion came from other data. Which rows the champion trained on
is rebuilt from its lineage and its snapshot; when its snapshot is not here that is unknown, the rows are
compared anyway, and the decision says so.
Aliases follow the outcome: a first version that passes becomes ``champion``; a later one that passes becomes
``challenger`` (promotion goes through rollout); a version that fails gets no alias.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from deskpilot import tags
from deskpilot.data.snapshots import LABEL, TEXT, Snapshot
from deskpilot.data.splits import text_keys
from deskpilot.domain import ModelRef
from deskpilot.evaluation.behavioral import BehavioralSuite
from deskpilot.evaluation.evaluate import Evaluation, EvaluationData, EvaluationOptions, evaluate
from deskpilot.evaluation.gate import ComparedRows, GateDecision, decide
from deskpilot.evaluation.model_card import render_model_card
from deskpilot.evaluation.policy import Policy, load_policy
from deskpilot.evaluation.report import render_html, render_markdown
from deskpilot.models.artifact import TriageModel
from deskpilot.registry.base import (
    CHALLENGER,
    CHAMPION,
    EVALUATION,
    GATE_DECISION,
    MODEL_CARD,
    REPORT_HTML,
    REPORT_MD,
    ModelRegistry,
    ModelVersion,
    RunRecord,
)
from deskpilot.training.lineage import environment_tags
from deskpilot.training.run import Progress, TrainingConfig, TrainingResult, train_on_snapshot
from deskpilot.training.seen import SnapshotLookup, evaluation_identity, seen_by


@dataclass(frozen=True)
class RegisteredRun:
    version: ModelVersion
    result: TrainingResult
    evaluation: Evaluation
    decision: GateDecision
    alias: str | None  # champion, challenger, or None when the gate failed
    champion_evaluation: Evaluation | None = None  # the champion on the gate's rows, when there is one
    compared_evaluation: Evaluation | None = None  # the new version on the gate's rows, when there is one

    @property
    def became_champion(self) -> bool:
        return self.alias == CHAMPION


def evaluation_data(snapshot: Snapshot, rows: np.ndarray) -> EvaluationData:
    """Rows of the frozen evaluation split (positions in the snapshot), with its extra columns for slices."""
    frame = snapshot.frame.iloc[rows]
    extras = {
        column: frame[column].astype(str).tolist() for column in frame.columns if column not in (TEXT, LABEL)
    }
    return EvaluationData(
        texts=frame[TEXT].tolist(),
        labels=frame[LABEL].tolist(),
        source=f"snapshot {snapshot.digest[:12]}, frozen evaluation split",
        extras=extras,
    )


@dataclass(frozen=True)
class _Plan:
    """The rows to evaluate on, and the account of them the decision keeps."""

    rows: np.ndarray  # positions in the snapshot
    compared: ComparedRows | None
    unmatched: bool = False  # the champion trained on every offered row


def _plan(
    snapshot: Snapshot,
    result: TrainingResult,
    champion: TriageModel | None,
    snapshots: SnapshotLookup | None,
) -> _Plan:
    offered = result.split.evaluation
    if champion is None:
        return _Plan(offered, None)
    ours = result.model.manifest.lineage
    theirs = champion.manifest.lineage
    identity = evaluation_identity(ours)
    source = f"frozen evaluation split {str(identity)[:12]}"
    if identity is not None and evaluation_identity(theirs) == identity:
        return _Plan(offered, ComparedRows(offered.size, offered.size, 0, 0, source=source))

    def lookup(digest: str) -> Snapshot | None:
        if digest == snapshot.digest:
            return snapshot
        return snapshots(digest) if snapshots is not None else None

    seen = seen_by(theirs, lookup)
    mask = seen.mask(text_keys(snapshot.frame[TEXT].iloc[offered]))
    if mask is None:
        note = f"the champion's training rows are unknown ({seen.why_unknown})"
        return _Plan(offered, ComparedRows(offered.size, offered.size, None, 0, source=source, notes=(note,)))
    kept = offered[~mask]
    account = ComparedRows(offered.size, kept.size, int(mask.sum()), 0, source=source)
    if kept.size == 0:
        return _Plan(offered, account, unmatched=True)
    return _Plan(kept, account)


@dataclass(frozen=True)
class _Gate:
    """The evaluations the gate compares: both models on the plan's rows."""

    challenger: Evaluation
    champion: Evaluation | None
    champion_info: dict[str, Any] | None
    unmatched: bool


def _gate_evaluations(
    snapshot: Snapshot,
    plan: _Plan,
    data: EvaluationData,
    evaluation: Evaluation,
    result: TrainingResult,
    champion_model: TriageModel | None,
    champion_ref: ModelRef | None,
    evaluate_on: Callable[[TriageModel, EvaluationData, dict[str, Any]], Evaluation],
    say: Progress,
) -> _Gate:
    """Both models on the plan's rows. The new version's evaluation on its whole split is reused when the
    plan keeps every row; otherwise it is evaluated again on the subset, so the pair stays paired. A champion
    that cannot be scored on them (it knows none of their labels) is unmatched, with the reason."""
    if champion_ref is None or champion_model is None:
        return _Gate(evaluation, None, None, unmatched=False)
    info: dict[str, Any] = {
        "name": champion_ref.name,
        "uri": champion_ref.uri,
        **_comparison_note(result.model, champion_model, plan),
    }
    if plan.unmatched:
        return _Gate(evaluation, None, info, unmatched=True)
    subset = plan.rows.size < result.split.evaluation.size
    compared_data = evaluation_data(snapshot, plan.rows) if subset else data
    say(f"evaluate the champion {champion_ref.uri} on the same messages")
    try:
        champion = evaluate_on(champion_model, compared_data, info)
    except ValueError as exc:  # it knows none of the evaluation labels: there is nothing to compare
        reason = f"the champion {champion_ref.uri} cannot be compared on these rows: {exc}"
        info = {**info, "comparison_unseen_by_both": False, "unmatched_reason": reason}
        return _Gate(evaluation, None, info, unmatched=True)
    if not subset:
        return _Gate(evaluation, champion, info, unmatched=False)
    say(f"evaluate the new version on the same {len(compared_data.texts):,} messages")
    challenger = evaluate_on(result.model, compared_data, {"name": champion_ref.name, "uri": None})
    return _Gate(challenger, champion, info, unmatched=False)


def train_and_register(
    snapshot: Snapshot,
    config: TrainingConfig,
    registry: ModelRegistry,
    *,
    name: str,
    policy: Policy | None = None,
    suite: BehavioralSuite | None = None,
    progress: Progress | None = None,
    snapshots: SnapshotLookup | None = None,
) -> RegisteredRun:
    """Train on the snapshot, gate against the champion, register the version and set its alias.
    ``snapshots`` finds the champion's snapshot when it is another one (to know which rows it trained on)."""
    say = progress or (lambda _message: None)
    policy = policy or load_policy()
    result = train_on_snapshot(snapshot, config, progress=progress)
    champion_version = registry.alias_version(name, CHAMPION)
    champion_ref = ModelRef(name, version=champion_version) if champion_version is not None else None
    champion_model = registry.load(champion_ref) if champion_ref is not None else None
    plan = _plan(snapshot, result, champion_model, snapshots)
    options = EvaluationOptions(
        n_boot=policy.bootstrap, seed=config.seed, per_class_min_support=policy.per_class_min_support
    )
    # The version's own record is always its whole frozen evaluation split, whatever the champion saw.
    data = evaluation_data(snapshot, result.split.evaluation)
    say(f"evaluate on {len(data.texts):,} messages of the frozen evaluation split")
    evaluation = evaluate(
        result.model, data, model_info={"name": name, "uri": None}, suite=suite, options=options
    )
    gate = _gate_evaluations(
        snapshot,
        plan,
        data,
        evaluation,
        result,
        champion_model,
        champion_ref,
        lambda model, rows, info: evaluate(model, rows, model_info=info, suite=suite, options=options),
        say,
    )
    compared, champion_eval, champion_info = gate.challenger, gate.champion, gate.champion_info
    unmatched = gate.unmatched
    decision = decide(
        compared,
        champion_eval,
        policy,
        seed=config.seed,
        rows=plan.compared,
        unmatched_champion=champion_info if unmatched else None,
    )
    say(f"gate: {decision.outcome} ({decision.reason()})")
    say(f"register as {name}")
    environment = environment_tags()
    version = registry.register(
        result.model,
        name=name,
        record=_run_record(snapshot, config, result, evaluation, decision, environment),
    )
    evaluation.model["uri"] = version.uri
    compared.model["uri"] = version.uri
    decision = replace(decision, challenger={**decision.challenger, "uri": version.uri})
    card = render_model_card(
        title=version.uri,
        evaluation=evaluation,
        lineage={
            **result.model.manifest.lineage,
            "code_version": environment[tags.GIT_COMMIT],
        },
        label_counts=snapshot.metadata.label_counts,
        decision=decision,
    )
    title = f"{version.uri} ({config.family}) on its frozen evaluation split"
    reported = evaluation
    if compared is not evaluation:  # the report shows the gate's paired comparison, on the rows it used
        reported = compared
        title += f" ({compared.data['rows']:,} rows the champion did not train on)"
    registry.annotate(
        name,
        version.version,
        documents={
            MODEL_CARD: card,
            GATE_DECISION: json.dumps(decision.to_dict(), indent=2, default=str),
            EVALUATION: json.dumps(evaluation.to_dict(), indent=2, default=str),
            REPORT_HTML: render_html(reported, champion_eval, decision, title=title),
            REPORT_MD: render_markdown(reported, champion_eval, decision, title=title),
        },
        description=card,
    )
    alias = None
    if decision.passed:
        alias = CHAMPION if champion_version is None else CHALLENGER
        registry.set_alias(name, alias, version.version)
    return RegisteredRun(
        version=registry.get(ModelRef(name, version=version.version)),
        result=result,
        evaluation=evaluation,
        decision=decision,
        alias=alias,
        champion_evaluation=champion_eval,
        compared_evaluation=compared if champion_eval is not None else None,
    )


def _run_record(
    snapshot: Snapshot,
    config: TrainingConfig,
    result: TrainingResult,
    evaluation: Evaluation,
    decision: GateDecision,
    environment: dict[str, str],
) -> RunRecord:
    """Parameters, validation metrics (``val_``: the rows it was calibrated on) and the frozen evaluation
    split's (``eval_``: rows no version of the lineage trained on), tags."""
    lineage = result.model.manifest.lineage
    held_out = {
        f"eval_{name}": interval.value
        for name, interval in evaluation.headline.items()
        if math.isfinite(interval.value)
    }
    return RunRecord(
        params={
            "family": config.family,
            "seed": config.seed,
            "validation_fraction": config.validation_fraction,
            "target_precision": config.target_precision,
            **{f"model.{k}": v for k, v in lineage.get("params", {}).items()},
        },
        metrics={**{f"val_{k}": v for k, v in result.metrics.items()}, **held_out},
        tags={
            tags.FAMILY: config.family,
            tags.DATASET_DIGEST: snapshot.digest,
            tags.SOURCE_FILE: snapshot.metadata.source_file,
            tags.SEED: str(config.seed),
            **decision.tags(),
            **environment,
        },
    )


SPLIT_KEYS = ("dataset_digest", "seed", "validation_fraction", "split")


def split_identity(lineage: dict[str, Any]) -> dict[str, Any]:
    """What names a model's split: its snapshot, seed, fraction and (for a preset split) the split's note."""
    return {key: lineage.get(key) for key in SPLIT_KEYS}


def _comparison_note(challenger: TriageModel, champion: TriageModel, plan: _Plan) -> dict[str, Any]:
    """Whether the compared rows are unseen by both models, and whether both hold out the same split."""
    ours = evaluation_identity(challenger.manifest.lineage)
    return {
        "same_evaluation_split": ours is not None and ours == evaluation_identity(champion.manifest.lineage),
        "comparison_unseen_by_both": plan.compared is not None
        and not plan.unmatched
        and plan.compared.unseen_by_both,
    }
