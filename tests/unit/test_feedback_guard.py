"""The feedback guard: agreement against the snapshot and other tenants, the per-intent cap, the per-tenant
share, and its report; all pure and deterministic."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpilot.errors import UsageError
from deskpilot.store.base import OTHER_INTENT
from deskpilot.workflows.feedback.guard import GuardOptions, GuardResult, Reason, apply_guard
from deskpilot.workflows.feedback.report import class_balance
from deskpilot.workflows.feedback.verdicts import AUDIT_SAMPLE, AUTO_CORRECTION, HUMAN_ROUTE, Reading, Verdict

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
KNOWN = frozenset({"card_arrival", "lost_card", "top_up"})


def verdict(
    tenant: str,
    text: str,
    label: str,
    minute: int = 0,
    predicted: str = "top_up",
    *,
    reviewer: str = HUMAN_ROUTE,
) -> Verdict:
    return Verdict(
        tenant=tenant,
        request_id=f"{tenant}-{text}-{minute}",
        text=text,
        key=" ".join(text.casefold().split()),
        label=label,
        predicted=predicted,
        confidence=0.5 if reviewer == HUMAN_ROUTE else 0.97,
        route="human" if reviewer == HUMAN_ROUTE else "auto",
        reviewer=reviewer,
        model_name="m",
        model_version="1",
        decided_at=T0 + timedelta(minutes=minute),
        verdict_at=T0 + timedelta(minutes=minute, seconds=30),
    )


def guard(
    verdicts: list[Verdict],
    snapshot: dict[str, str] | None = None,
    **options: object,
) -> GuardResult:
    reading = Reading(None, T0 + timedelta(days=1), None, tuple(verdicts), {}, {})
    labels = {key: frozenset({label}) for key, label in (snapshot or {}).items()}
    defaults: dict[str, object] = {"max_tenant_share": 1.0, "min_agreement": 2}
    return apply_guard(reading.by_text(), labels, KNOWN, GuardOptions(**(defaults | options)))  # type: ignore[arg-type]


def rejected(result: GuardResult) -> dict[tuple[str, str], Reason]:
    return {(r.group.key, r.group.label): r.reason for r in result.rejected}


def test_a_label_nobody_contradicts_is_a_new_row_and_one_the_snapshot_has_changes_nothing() -> None:
    result = guard(
        [verdict("acme", "Where is my card", "card_arrival"), verdict("acme", "old text", "lost_card")],
        snapshot={"old text": "lost_card"},
    )
    assert [(c.key, c.label, c.flip) for c in result.accepted] == [
        ("where is my card", "card_arrival", False)
    ]
    assert rejected(result) == {("old text", "lost_card"): Reason.AGREES_WITH_SNAPSHOT}


def test_no_intent_fits_and_unknown_labels_never_train() -> None:
    result = guard([verdict("acme", "gibberish", OTHER_INTENT), verdict("acme", "new thing", "refund_v2")])
    assert result.accepted == ()
    assert rejected(result) == {
        ("gibberish", OTHER_INTENT): Reason.OTHER_INTENT,
        ("new thing", "refund_v2"): Reason.UNKNOWN_LABEL,
    }


def test_overturning_the_snapshot_needs_min_agreement_tenants() -> None:
    snapshot = {"card stuck": "card_arrival"}
    alone = guard(
        [verdict("acme", "card stuck", "lost_card"), verdict("acme", "Card  stuck", "lost_card", 1)], snapshot
    )
    assert rejected(alone) == {("card stuck", "lost_card"): Reason.CONTRADICTS_SNAPSHOT}
    two = guard(
        [verdict("acme", "card stuck", "lost_card"), verdict("globex", "card stuck", "lost_card", 1)],
        snapshot,
    )
    (flip,) = two.accepted
    assert (flip.label, flip.previous, flip.tenants) == ("lost_card", ("card_arrival",), ("acme", "globex"))
    assert guard([verdict("acme", "card stuck", "lost_card")], snapshot, min_agreement=1).flips


def test_verdicts_that_disagree_on_a_new_text_need_agreement_and_a_clear_winner() -> None:
    one_each = [verdict("acme", "x y", "top_up"), verdict("globex", "x y", "lost_card", 1)]
    assert set(rejected(guard(one_each)).values()) == {Reason.CONFLICTING_VERDICTS}
    two_vs_one = [*one_each, verdict("initech", "x y", "top_up", 2)]
    result = guard(two_vs_one)
    assert [(c.label, c.flip) for c in result.accepted] == [("top_up", False)]
    assert rejected(result) == {("x y", "lost_card"): Reason.CONFLICTING_VERDICTS}
    two_vs_two = [*two_vs_one, verdict("hooli", "x y", "lost_card", 3)]
    assert set(rejected(guard(two_vs_two)).values()) == {Reason.UNRESOLVED_CONFLICT}
    # "no intent fits" from two tenants is a strong rival too
    other = [*two_vs_one, verdict("hooli", "x y", OTHER_INTENT), verdict("umbrella", "x y", OTHER_INTENT)]
    assert rejected(guard(other))[("x y", "top_up")] is Reason.UNRESOLVED_CONFLICT


def test_tenants_that_confirm_the_snapshot_block_a_flip_as_much_as_those_who_ask_for_it() -> None:
    votes = [
        verdict("acme", "card stuck", "lost_card"),
        verdict("globex", "card stuck", "lost_card"),
        verdict("initech", "card stuck", "card_arrival"),
        verdict("hooli", "card stuck", "card_arrival"),
    ]
    result = guard(votes, {"card stuck": "card_arrival"})
    assert result.accepted == ()
    assert rejected(result)[("card stuck", "lost_card")] is Reason.UNRESOLVED_CONFLICT


def test_one_tenant_alone_contributes_nothing_under_a_share_below_one() -> None:
    mine = [verdict("acme", f"text {i}", "top_up", i) for i in range(5)]
    capped = guard(mine, max_tenant_share=0.5)
    assert capped.accepted == ()
    assert set(rejected(capped).values()) == {Reason.TENANT_CAP}
    assert capped.shares[0].dropped == 5
    assert len(guard(mine, max_tenant_share=1.0).accepted) == 5


def test_a_flooding_tenant_keeps_its_earliest_rows_up_to_the_share() -> None:
    flood = [verdict("mallory", f"spam {i:02d}", "top_up", 100 - i) for i in range(10)]
    honest = [verdict(t, f"{t} msg {i}", "lost_card", i) for t in ("acme", "globex") for i in range(3)]
    result = guard(flood + honest, max_tenant_share=0.5)
    mallory = [c for c in result.accepted if c.tenants == ("mallory",)]
    # a <= 0.5 * (a + 6) gives 6: the six earliest verdicts (minutes 91..96 are texts 09..04)
    assert sorted(c.key for c in mallory) == [f"spam {i:02d}" for i in range(4, 10)]
    shares = {s.tenant: s for s in result.shares}
    assert shares["mallory"].share == pytest.approx(0.5)
    assert shares["mallory"].dropped == 4
    assert shares["acme"].verdicts == 3
    assert result.reasons() == {"tenant_cap": {"groups": 4, "verdicts": 4}}


def test_rows_several_tenants_give_count_a_share_to_each_and_are_never_dropped() -> None:
    shared = [verdict(t, f"shared {i}", "top_up", i) for i in range(4) for t in ("acme", "globex")]
    alone = [verdict("acme", f"acme only {i}", "lost_card", 10 + i) for i in range(4)]
    result = guard(shared + alone, max_tenant_share=0.5)
    # acme: a + 2 <= 0.5 * (a + 4)  ->  a = 0; the four shared rows stay
    assert sorted(c.key for c in result.accepted) == [f"shared {i}" for i in range(4)]
    assert {s.tenant: s.share for s in result.shares} == {"acme": 0.5, "globex": 0.5}


def test_the_per_intent_cap_keeps_the_earliest_changes() -> None:
    votes = [verdict("acme", f"t{i}", "top_up", 10 - i) for i in range(5)]
    result = guard([*votes, verdict("acme", "other", "lost_card", 50)], max_per_intent=2)
    assert [c.key for c in result.accepted] == ["t4", "t3", "other"]
    assert result.reasons() == {"intent_cap": {"groups": 3, "verdicts": 3}}


def test_the_outcome_does_not_depend_on_the_order_verdicts_arrive_in() -> None:
    votes = [
        verdict(t, f"m{i % 7}", ["top_up", "lost_card"][i % 2], i) for i, t in enumerate(["a", "b", "c"] * 8)
    ]
    first = guard(votes, max_tenant_share=0.4, max_per_intent=3)
    random.Random(4).shuffle(votes)
    again = guard(votes, max_tenant_share=0.4, max_per_intent=3)
    assert [(c.key, c.label) for c in again.accepted] == [(c.key, c.label) for c in first.accepted]
    assert rejected(again) == rejected(first)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tenant_share": 0.0}, "--max-tenant-share must be in"),
        ({"max_tenant_share": 1.5}, "--max-tenant-share must be in"),
        ({"min_agreement": 0}, "--min-agreement must be at least 1"),
        ({"max_per_intent": 0}, "--max-per-intent must be at least 1"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_option(options: dict[str, float], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        GuardOptions(**options)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=4),
    shared=st.integers(min_value=0, max_value=4),
    cap=st.sampled_from([0.2, 0.34, 0.5, 0.75, 1.0]),
)
def test_every_share_keeps_the_cap_and_no_dropped_row_could_have_stayed(
    counts: list[int], shared: int, cap: float
) -> None:
    tenants = [f"t{i}" for i in range(len(counts))]
    votes = [
        verdict(t, f"{t} row {j}", "top_up", j)
        for t, n in zip(tenants, counts, strict=True)
        for j in range(n)
    ]
    votes += [verdict(t, f"shared {j}", "lost_card", j) for j in range(shared) for t in tenants[:2]]
    result = guard(votes, max_tenant_share=cap)
    limit = Fraction(str(cap))
    total = len(result.accepted)
    vouched = {t: Fraction(0) for t in tenants}
    alone = dict.fromkeys(tenants, 0)
    for change in result.accepted:
        if len(change.tenants) == 1:
            alone[change.tenants[0]] += 1
        for t in change.tenants:
            vouched[t] += Fraction(1, len(change.tenants))
    for share in result.shares:
        t = share.tenant
        if alone[t]:
            assert vouched[t] <= limit * total
        if share.dropped:  # one more of its rows would break its cap
            assert vouched[t] + 1 > limit * (total + 1)


def test_class_balance_reports_shares_shifts_and_total_variation() -> None:
    balance = class_balance({"a": 50, "b": 50}, {"a": 50, "b": 50, "c": 25})
    rows = {row["label"]: row for row in balance["labels"]}
    assert rows["c"] == {
        "label": "c",
        "before": 0,
        "after": 25,
        "before_share": 0.0,
        "after_share": 0.2,
        "shift_pp": 20.0,
    }
    assert rows["a"]["shift_pp"] == -10.0
    assert balance["total_variation"] == 0.2


def test_overturning_confident_auto_routes_unasked_needs_min_agreement_tenants() -> None:
    """One tenant relabelling what the model routed automatically, without an audit-sample request, is the
    cheapest poisoning there is: the model counts as the other side."""
    alone = guard([verdict("mallory", "new text", "lost_card", 1, reviewer=AUTO_CORRECTION)])
    assert not alone.accepted
    assert [r.reason for r in alone.rejected] == [Reason.OVERRIDES_MODEL]
    asked = guard([verdict("acme", "new text", "lost_card", 1, reviewer=AUDIT_SAMPLE)])
    assert [c.key for c in asked.accepted] == ["new text"]
    confirmed = guard(
        [
            verdict("acme", "new text", "lost_card", 1, reviewer=AUTO_CORRECTION),
            verdict("globex", "new text", "lost_card", 2, reviewer=AUTO_CORRECTION),
        ]
    )
    assert [c.key for c in confirmed.accepted] == ["new text"]
    agreeing = guard([verdict("acme", "new text", "top_up", 1, reviewer=AUTO_CORRECTION)])
    assert not agreeing.rejected or agreeing.rejected[0].reason is not Reason.OVERRIDES_MODEL
