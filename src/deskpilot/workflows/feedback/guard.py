"""The guard between feedback and the next training snapshot: which verdicts may change what a model learns.

A verdict is a claim one tenant makes, and retraining turns claims into the labels every tenant is served
by, so a tenant (careless, or hostile) must not be able to steer the model alone (ADR 0014). Three rules,
in order, all deterministic (ties fall to the earlier verdict, then to the text):

1. **agreement**, per normalized text. A label nobody contradicts is accepted: a new row, or nothing when
   the snapshot already has the text with that label. A label that contradicts the snapshot's own label
   for the text, or other verdicts on it, is accepted only when ``min_agreement`` distinct tenants gave it
   and no contrary label has that much support; it then flips the snapshot's label (or settles a new
   text). A label that only overturns confident auto routes, with no audit-sample request behind it, is
   contested by the model itself and needs ``min_agreement`` tenants too. Verdicts saying no intent fits,
   or naming a label the snapshot does not have, never train.
2. **per-intent cap** (optional): at most ``max_per_intent`` accepted changes per intent, earliest first.
3. **per-tenant share**: no tenant contributes more than ``max_tenant_share`` of the accepted changes. A
   change counts 1/k towards each of the k tenants who gave it, and only changes a single tenant vouches
   for are dropped (the latest first), until every tenant's share is within the cap: the largest set of
   changes that keeps it, so one tenant alone (share 1) contributes nothing unless the cap is 1.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

from deskpilot.errors import UsageError
from deskpilot.workflows.feedback.verdicts import AUTO_CORRECTION, Verdict, VerdictGroup


class Reason(StrEnum):
    """Why a verdict group did not change the snapshot."""

    OTHER_INTENT = "other_intent"  # "none of these": not a label to train on
    UNKNOWN_LABEL = "unknown_label"  # a label the snapshot has no rows of
    AGREES_WITH_SNAPSHOT = "agrees_with_snapshot"  # nothing to change
    CONTRADICTS_SNAPSHOT = "contradicts_snapshot"  # too few tenants to overturn the snapshot's label
    CONFLICTING_VERDICTS = "conflicting_verdicts"  # too few tenants to settle a text they disagree on
    UNRESOLVED_CONFLICT = "unresolved_conflict"  # contrary labels both have enough tenants
    OVERRIDES_MODEL = "overrides_model"  # too few tenants overturn a confident auto route unasked
    INTENT_CAP = "intent_cap"
    TENANT_CAP = "tenant_cap"


@dataclass(frozen=True)
class GuardOptions:
    max_tenant_share: float = 0.5
    min_agreement: int = 2
    max_per_intent: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.max_tenant_share <= 1.0:
            raise UsageError(f"--max-tenant-share must be in (0, 1], not {self.max_tenant_share}")
        if self.min_agreement < 1:
            raise UsageError(f"--min-agreement must be at least 1, not {self.min_agreement}")
        if self.max_per_intent is not None and self.max_per_intent < 1:
            raise UsageError(f"--max-per-intent must be at least 1, not {self.max_per_intent}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_tenant_share": self.max_tenant_share,
            "min_agreement": self.min_agreement,
            "max_per_intent": self.max_per_intent,
        }


@dataclass(frozen=True)
class Change:
    """An accepted change: a new row, or (``previous`` non-empty) a flip of the snapshot's label."""

    group: VerdictGroup
    previous: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.group.key

    @property
    def label(self) -> str:
        return self.group.label

    @property
    def text(self) -> str:
        return self.group.latest.text

    @property
    def flip(self) -> bool:
        return bool(self.previous)

    @property
    def tenants(self) -> tuple[str, ...]:
        return self.group.tenants

    @property
    def order(self) -> tuple[Any, ...]:
        return (self.group.verdicts[0].verdict_at, self.key)


@dataclass(frozen=True)
class Rejection:
    group: VerdictGroup
    reason: Reason
    detail: str


@dataclass(frozen=True)
class TenantShare:
    tenant: str
    verdicts: int  # every verdict of the tenant the guard saw
    accepted: float  # accepted changes, 1/k for a change k tenants gave
    share: float  # of all accepted changes
    dropped: int  # changes of this tenant alone dropped by the cap


@dataclass(frozen=True)
class GuardResult:
    options: GuardOptions
    accepted: tuple[Change, ...]
    rejected: tuple[Rejection, ...]
    shares: tuple[TenantShare, ...]

    @property
    def flips(self) -> tuple[Change, ...]:
        return tuple(change for change in self.accepted if change.flip)

    @property
    def added(self) -> tuple[Change, ...]:
        return tuple(change for change in self.accepted if not change.flip)

    def reasons(self) -> dict[str, dict[str, int]]:
        """Per reason: verdict groups (one text, one label) and the verdicts in them."""
        found: dict[str, dict[str, int]] = defaultdict(lambda: {"groups": 0, "verdicts": 0})
        for rejection in self.rejected:
            found[rejection.reason]["groups"] += 1
            found[rejection.reason]["verdicts"] += rejection.group.count
        return {str(reason): dict(found[reason]) for reason in sorted(found)}


def apply_guard(
    by_text: Mapping[str, Sequence[VerdictGroup]],
    snapshot_labels: Mapping[str, frozenset[str]],
    known_labels: frozenset[str],
    options: GuardOptions,
) -> GuardResult:
    """Judge every text's verdicts against the snapshot (normalized text -> its labels) and each other."""
    accepted: list[Change] = []
    rejected: list[Rejection] = []
    for key, groups in by_text.items():
        change, refused = _judge(groups, snapshot_labels.get(key, frozenset()), known_labels, options)
        rejected += refused
        if change is not None:
            accepted.append(change)
    accepted.sort(key=lambda change: change.order)
    accepted, capped = _cap_intents(accepted, options.max_per_intent)
    rejected += capped
    accepted, dropped = _cap_tenants(accepted, Fraction(str(options.max_tenant_share)))
    rejected += dropped
    all_verdicts = [v for groups in by_text.values() for group in groups for v in group.verdicts]
    return GuardResult(
        options=options,
        accepted=tuple(accepted),
        rejected=tuple(sorted(rejected, key=lambda r: (r.group.verdicts[0].verdict_at, r.group.key))),
        shares=_shares(all_verdicts, accepted, dropped),
    )


def _judge(
    groups: Sequence[VerdictGroup], snapshot: frozenset[str], known: frozenset[str], options: GuardOptions
) -> tuple[Change | None, list[Rejection]]:
    support = {group.label: len(group.tenants) for group in groups}
    need = options.min_agreement
    change: Change | None = None
    refused: list[Rejection] = []
    for group in groups:
        label = group.label
        rivals = (set(support) | snapshot) - {label}
        if group.other:
            refused.append(Rejection(group, Reason.OTHER_INTENT, "the agent said no known intent fits"))
        elif label not in known:
            refused.append(Rejection(group, Reason.UNKNOWN_LABEL, f"the snapshot has no rows of {label!r}"))
        elif label in snapshot:
            refused.append(Rejection(group, Reason.AGREES_WITH_SNAPSHOT, "the snapshot has this label"))
        elif not rivals and _unasked_override(group) and support[label] < need:
            refused.append(
                Rejection(
                    group,
                    Reason.OVERRIDES_MODEL,
                    f"{support[label]} tenant(s) overturn confident auto routes to "
                    f"{group.latest.predicted!r} unasked (no audit sample); that needs {need}",
                )
            )
        elif not rivals:
            change = Change(group)
        elif support[label] < need:
            reason = Reason.CONTRADICTS_SNAPSHOT if snapshot else Reason.CONFLICTING_VERDICTS
            against = ", ".join(sorted(rivals))
            refused.append(
                Rejection(
                    group,
                    reason,
                    f"{support[label]} tenant(s) against {against}; a contested label needs {need}",
                )
            )
        elif strong := sorted(r for r in rivals if support.get(r, 0) >= need):
            detail = f"{', '.join(strong)} also has {need}+ tenants"
            refused.append(Rejection(group, Reason.UNRESOLVED_CONFLICT, detail))
        else:
            change = Change(group, previous=tuple(sorted(snapshot)))
    return change, refused


def _unasked_override(group: VerdictGroup) -> bool:
    """Every verdict of the group corrects an auto route nobody asked a person to check: the model was
    confident, so one tenant's say-so against it is the cheapest way to teach it a wrong label."""
    return all(verdict.reviewer == AUTO_CORRECTION and verdict.corrected for verdict in group.verdicts)


def _cap_intents(changes: list[Change], cap: int | None) -> tuple[list[Change], list[Rejection]]:
    if cap is None:
        return changes, []
    seen: Counter[str] = Counter()
    kept, refused = [], []
    for change in changes:  # earliest first
        seen[change.label] += 1
        if seen[change.label] <= cap:
            kept.append(change)
        else:
            refused.append(
                Rejection(change.group, Reason.INTENT_CAP, f"over {cap} changes to {change.label}")
            )
    return kept, refused


def _cap_tenants(changes: list[Change], cap: Fraction) -> tuple[list[Change], list[Rejection]]:
    """The largest set of changes (dropping sole-tenant ones, latest first) where every tenant's share is at
    most ``cap``. Decreasing fixed point: feasible sets are closed under union, so it lands on the largest."""
    alone: dict[str, list[Change]] = defaultdict(list)
    shared: list[Change] = []
    vouched: dict[str, Fraction] = defaultdict(Fraction)
    for change in changes:
        if len(change.tenants) == 1:
            alone[change.tenants[0]].append(change)
        else:
            shared.append(change)
            for tenant in change.tenants:
                vouched[tenant] += Fraction(1, len(change.tenants))
    keep = {tenant: len(mine) for tenant, mine in alone.items()}
    changed = True
    while changed:
        changed = False
        total = sum(keep.values()) + len(shared)
        for tenant, kept in keep.items():
            limit = max(0, math.floor(cap * total - vouched[tenant]))
            if kept > limit:
                keep[tenant], changed = limit, True
    kept_changes = list(shared)
    refused = []
    for tenant, mine in alone.items():
        kept_changes += mine[: keep[tenant]]
        refused += [
            Rejection(
                c.group, Reason.TENANT_CAP, f"{tenant} would give more than {float(cap):.0%} of the rows"
            )
            for c in mine[keep[tenant] :]
        ]
    return sorted(kept_changes, key=lambda c: c.order), refused


def _shares(
    verdicts: Iterable[Verdict], accepted: Sequence[Change], dropped: Sequence[Rejection]
) -> tuple[TenantShare, ...]:
    given = Counter(v.tenant for v in verdicts)
    credit: dict[str, Fraction] = defaultdict(Fraction)
    for change in accepted:
        for tenant in change.tenants:
            credit[tenant] += Fraction(1, len(change.tenants))
    lost = Counter(r.group.tenants[0] for r in dropped)
    total = len(accepted)
    return tuple(
        TenantShare(
            tenant=tenant,
            verdicts=given[tenant],
            accepted=float(credit[tenant]),
            share=float(credit[tenant] / total) if total else 0.0,
            dropped=lost[tenant],
        )
        for tenant in sorted(given)
    )
