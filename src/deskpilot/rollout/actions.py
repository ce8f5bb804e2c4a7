"""Promote and roll back: change the rollout state, mirror the champion alias, append to the audit chain.

Only a version whose gate passed can be promoted, unless the caller forces it with a reason (recorded as a
``force_promote`` entry). Writes are optimistic: the state's revision must be the one the caller read, so
two operators (or an operator and the automatic rollback) cannot silently overwrite each other. Reading the
revision and writing the state are two registry calls, so a writer also claims the step from the stored
state (a write-once record in the registry) before it writes: of several replicas whose guards saw the same
breach at the same moment, exactly one rolls back and the others get a conflict (ADR 0017).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any, Protocol

from deskpilot import tags
from deskpilot.domain import ModelRef
from deskpilot.errors import RolloutConflictError, RolloutError, UsageError
from deskpilot.registry.base import CHAMPION, ModelRegistry
from deskpilot.rollout.state import HISTORY_LIMIT, RolloutState, Stage
from deskpilot.store.audit import AuditAction

CHAMPION_TARGET = "champion"
#: Where ``promote`` can put a version: a challenger stage, or champion.
PROMOTION_TARGETS = (*(str(stage) for stage in Stage if stage is not Stage.NONE), CHAMPION_TARGET)


class AuditTrail(Protocol):
    """Where rollout appends its entries (``deskpilot.workflows.audit.AuditRecorder``, or an ``AuditLog``)."""

    def append(
        self, actor: str, action: str, target: str, reason: str, payload: dict[str, Any]
    ) -> object: ...


#: A claim older than this whose state was never written is taken as abandoned (its writer died between
#: the claim and the write), so that the rollout cannot stay stuck behind it.
CLAIM_ABANDONED_S = 30.0
_CLAIM_ATTEMPTS = 5


def read_state(registry: ModelRegistry, name: str) -> RolloutState:
    """The stored state, or (before the first promotion) the ``champion`` alias alone."""
    return _read(registry, name)[1]


def _read(registry: ModelRegistry, name: str) -> tuple[str | None, RolloutState]:
    raw = registry.model_tag(name, tags.ROLLOUT_STATE)
    if raw:
        return raw, RolloutState.from_json(raw)
    return None, RolloutState(champion=registry.alias_version(name, CHAMPION))


def write_state(registry: ModelRegistry, name: str, state: RolloutState, *, expected_revision: int) -> None:
    raw, current = _read(registry, name)
    if current.revision != expected_revision:
        raise RolloutConflictError(
            f"the rollout of {name} changed while this action was prepared (revision {current.revision}, "
            f"expected {expected_revision}); check `deskpilot rollout status` and retry"
        )
    _claim_step(registry, name, raw, current)
    registry.set_model_tag(name, tags.ROLLOUT_STATE, state.to_json())
    if state.champion is not None and state.champion != current.champion:
        registry.set_alias(name, CHAMPION, state.champion)


def _claim_step(registry: ModelRegistry, name: str, raw: str | None, current: RolloutState) -> None:
    """Claim the step from the stored state ``raw`` so that no other writer takes it too.

    Every writer that read ``raw`` claims the same key, beside the same version (the state's champion, else
    its challenger), so the registry's write-once record picks exactly one. The first state of a model has
    nothing stored to claim a step from, and only the revision check guards it.
    """
    anchor = current.champion or current.challenger
    if raw is None or anchor is None:
        return
    step = hashlib.sha256(raw.encode()).hexdigest()[:24]
    mine = f"{time.time():.3f} {secrets.token_hex(8)}"
    for attempt in range(_CLAIM_ATTEMPTS):
        held = registry.claim(name, anchor, f"{tags.ROLLOUT_CLAIM}.{step}.{attempt}", mine)
        if held == mine:
            return
        if not _abandoned(held):
            break
    raise RolloutConflictError(
        f"the rollout of {name} is being changed by another writer (a replica or an operator) from revision "
        f"{current.revision}; check `deskpilot rollout status` and retry"
    )


def _abandoned(owner: str) -> bool:
    claimed_at, _, _ = owner.partition(" ")
    try:
        return time.time() - float(claimed_at) > CLAIM_ABANDONED_S
    except ValueError:
        return False


def promote(
    registry: ModelRegistry,
    audit: AuditTrail,
    ref: ModelRef,
    *,
    to: Stage | str,
    percent: float | None,
    actor: str,
    reason: str,
    force: bool = False,
) -> RolloutState:
    """Put a version in shadow, in canary at ``percent``, or make it the champion."""
    version = registry.get(ref)
    gate = version.tags.get(tags.GATE, "none")
    if force and not reason.strip():
        raise UsageError("--force needs --reason: forced promotions are audited with their reason")
    if gate != tags.GATE_PASS and not force:
        raise RolloutError(
            f"{version.uri} did not pass its gate (gate: {gate}); run `deskpilot gate` or promote with "
            "--force --reason '...'",
            details={"gate": gate},
        )
    name, number = version.name, version.version
    state = read_state(registry, name)
    if to == CHAMPION_TARGET:
        if state.champion == number and state.challenger is None:
            raise RolloutError(f"{version.uri} is already the champion")
        history = (
            (state.champion, *state.history) if state.champion and state.champion != number else state.history
        )
        new = state.next(
            actor=actor,
            reason=reason,
            champion=number,
            challenger=None,
            stage=Stage.NONE,
            percent=0.0,
            history=history[:HISTORY_LIMIT],
        )
    else:
        stage = Stage(to)
        if stage is Stage.NONE:
            raise UsageError("promote to shadow, canary or champion")
        if state.champion == number:
            raise RolloutError(f"{version.uri} is the champion; a challenger must be another version")
        share = 0.0 if stage is Stage.SHADOW else (10.0 if percent is None else percent)
        if stage is Stage.CANARY and not 0.0 < share <= 100.0:
            raise UsageError(f"--percent must be in (0, 100], not {share}")
        new = state.next(actor=actor, reason=reason, challenger=number, stage=stage, percent=share)
    write_state(registry, name, new, expected_revision=state.revision)
    audit.append(
        actor,
        AuditAction.FORCE_PROMOTE if force and gate != tags.GATE_PASS else AuditAction.PROMOTE,
        version.uri,
        reason,
        {
            "to": str(to),
            "percent": new.percent,
            "gate": gate,
            "before": _summary(state),
            "after": _summary(new),
        },
    )
    return new


def rollback(
    registry: ModelRegistry,
    audit: AuditTrail,
    name: str,
    *,
    actor: str,
    reason: str,
    automatic: bool = False,
    expected_revision: int | None = None,
) -> RolloutState:
    """One step back: stop the challenger if there is one, else return to the previous champion.

    ``expected_revision`` is the revision the caller judged (the guard's): if the state moved on since
    (another replica rolled back first), this is a conflict, never a second step back.
    """
    state = read_state(registry, name)
    if expected_revision is not None and state.revision != expected_revision:
        raise RolloutConflictError(
            f"the rollout of {name} changed since it was judged (revision {state.revision}, expected "
            f"{expected_revision}): rolled back or changed already"
        )
    if state.challenger is not None:
        new = state.next(actor=actor, reason=reason, challenger=None, stage=Stage.NONE, percent=0.0)
        target = ModelRef(name, version=state.challenger).uri
    elif state.history:
        new = state.next(actor=actor, reason=reason, champion=state.history[0], history=state.history[1:])
        target = ModelRef(name, version=state.history[0]).uri
    else:
        raise RolloutError(f"nothing to roll back for {name}: no challenger and no earlier champion")
    write_state(registry, name, new, expected_revision=state.revision)
    audit.append(
        actor,
        AuditAction.AUTO_ROLLBACK if automatic else AuditAction.ROLLBACK,
        target,
        reason,
        {"before": _summary(state), "after": _summary(new)},
    )
    return new


def ramp(
    registry: ModelRegistry, audit: AuditTrail, name: str, *, percent: float, actor: str, reason: str
) -> RolloutState:
    """Raise the canary's share (the automatic ramp, after every rule held long enough)."""
    state = read_state(registry, name)
    if state.stage is not Stage.CANARY or state.challenger is None or percent <= state.percent:
        raise RolloutError(f"{name} has no canary below {percent}% to ramp")
    new = state.next(actor=actor, reason=reason, percent=percent)
    write_state(registry, name, new, expected_revision=state.revision)
    target = ModelRef(name, version=state.challenger).uri
    audit.append(actor, AuditAction.RAMP, target, reason, {"before": _summary(state), "after": _summary(new)})
    return new


def _summary(state: RolloutState) -> dict[str, Any]:
    return {
        "champion": state.champion,
        "challenger": state.challenger,
        "stage": str(state.stage),
        "percent": state.percent,
        "revision": state.revision,
    }
