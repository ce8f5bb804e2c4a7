"""Train, evaluate, gate, register: the second half of ``deskpilot train`` once the data is snapshotted.

The gate compares the new version with the current champion on the new version's validation split. When the
champion was trained on another snapshot or split, some of those rows may be in its training data; that can
only flatter the champion, so the comparison errs on the side of keeping it (recorded in the decision). A
version trained on a split that keeps the champion's sides (the feedback loop's, see ADR 0014) is compared on
rows neither model trained on, and the decision says so (``comparison_unseen_by_both``).
Aliases follow the outcome: a first version that passes becomes ``champion``; a later one that passes becomes
``challenger`` (promotion goes through rollout); a version that fails gets no alias.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from deskpilot import tags
from deskpilot.data.snapshots import LABEL, TEXT, Snapshot
from deskpilot.domain import ModelRef
from deskpilot.evaluation.behavioral import BehavioralSuite
from deskpilot.evaluation.evaluate import Evaluation, EvaluationData, EvaluationOptions, evaluate
from deskpilot.evaluation.gate import GateDecision, decide
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


@dataclass(frozen=True)
class RegisteredRun:
    version: ModelVersion
    result: TrainingResult
    evaluation: Evaluation
    decision: GateDecision
    alias: str | None  # champion, challenger, or None when the gate failed
    champion_evaluation: Evaluation | None = None  # the champion on the same rows, when there is one

    @property
    def became_champion(self) -> bool:
        return self.alias == CHAMPION


def validation_data(snapshot: Snapshot, result: TrainingResult) -> EvaluationData:
    """The rows the model was calibrated and measured on, with the snapshot's extra columns for slices."""
    frame = snapshot.frame.iloc[result.split.validation]
    seed = result.model.manifest.lineage["seed"]
    extras = {
        column: frame[column].astype(str).tolist() for column in frame.columns if column not in (TEXT, LABEL)
    }
    return EvaluationData(
        texts=frame[TEXT].tolist(),
        labels=frame[LABEL].tolist(),
        source=f"snapshot {snapshot.digest[:12]}, validation split (seed {seed})",
        extras=extras,
    )


def train_and_register(
    snapshot: Snapshot,
    config: TrainingConfig,
    registry: ModelRegistry,
    *,
    name: str,
    policy: Policy | None = None,
    suite: BehavioralSuite | None = None,
    progress: Progress | None = None,
) -> RegisteredRun:
    """Train on the snapshot, gate against the champion, register the version and set its alias."""
    say = progress or (lambda _message: None)
    policy = policy or load_policy()
    result = train_on_snapshot(snapshot, config, progress=progress)
    data = validation_data(snapshot, result)
    options = EvaluationOptions(
        n_boot=policy.bootstrap, seed=config.seed, per_class_min_support=policy.per_class_min_support
    )
    say(f"evaluate on {len(data.texts):,} validation messages")
    evaluation = evaluate(
        result.model, data, model_info={"name": name, "uri": None}, suite=suite, options=options
    )
    champion_version = registry.alias_version(name, CHAMPION)
    champion_eval = None
    if champion_version is not None:
        champion_ref = ModelRef(name, version=champion_version)
        say(f"evaluate the champion {champion_ref.uri} on the same messages")
        champion_model = registry.load(champion_ref)
        champion_eval = evaluate(
            champion_model,
            data,
            model_info={"name": name, "uri": champion_ref.uri, **_split_note(champion_model, result.model)},
            suite=suite,
            options=options,
        )
    decision = decide(evaluation, champion_eval, policy, seed=config.seed)
    say(f"gate: {decision.outcome} ({decision.reason()})")
    say(f"register as {name}")
    environment = environment_tags()
    version = registry.register(
        result.model, name=name, record=_run_record(snapshot, config, result, decision, environment)
    )
    evaluation.model["uri"] = version.uri
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
    title = f"{version.uri} ({config.family}) on its validation split"
    registry.annotate(
        name,
        version.version,
        documents={
            MODEL_CARD: card,
            GATE_DECISION: json.dumps(decision.to_dict(), indent=2, default=str),
            EVALUATION: json.dumps(evaluation.to_dict(), indent=2, default=str),
            REPORT_HTML: render_html(evaluation, champion_eval, decision, title=title),
            REPORT_MD: render_markdown(evaluation, champion_eval, decision, title=title),
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
    )


def _run_record(
    snapshot: Snapshot,
    config: TrainingConfig,
    result: TrainingResult,
    decision: GateDecision,
    environment: dict[str, str],
) -> RunRecord:
    lineage = result.model.manifest.lineage
    return RunRecord(
        params={
            "family": config.family,
            "seed": config.seed,
            "validation_fraction": config.validation_fraction,
            "target_precision": config.target_precision,
            **{f"model.{k}": v for k, v in lineage.get("params", {}).items()},
        },
        metrics={f"val_{k}": v for k, v in result.metrics.items()},
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


def _split_note(champion: TriageModel, challenger: TriageModel) -> dict[str, Any]:
    """Whether the champion's training rows stay out of the comparison: the same split as the challenger,
    or a challenger split that kept the champion's sides (its note names the champion's split as parent)."""
    ours, theirs = champion.manifest.lineage, challenger.manifest.lineage
    same = split_identity(ours) == split_identity(theirs)
    note = theirs.get("split")
    kept = isinstance(note, dict) and note.get("parent") == split_identity(ours)
    return {"same_split_as_challenger": same, "comparison_unseen_by_both": same or kept}
