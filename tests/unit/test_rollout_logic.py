"""The pure rollout modules on fakes: state, actions (registry + audit log), split, rules and monitor."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from deskpilot import tags
from deskpilot.domain import ModelRef, Role
from deskpilot.errors import RolloutConflictError, RolloutError, UsageError
from deskpilot.registry.base import CHAMPION, RunRecord
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.rollout.actions import promote, ramp, read_state, rollback, write_state
from deskpilot.rollout.monitor import RolloutMonitor
from deskpilot.rollout.rules import RolloutRules, WindowStats, breaches, feedback_drop
from deskpilot.rollout.split import BUCKETS, bucket, to_challenger
from deskpilot.rollout.state import RolloutState, Stage
from deskpilot.store.audit import InMemoryAuditLog

NAME = "triage"

# ---------------------------------------------------------------------------------------------- state


def test_state_round_trips_through_json() -> None:
    state = RolloutState(
        champion="3",
        challenger="5",
        stage=Stage.CANARY,
        percent=12.5,
        history=("2", "1"),
        revision=7,
        updated_by="ops",
        reason="try it",
    )
    text = state.to_json()
    assert json.loads(text)["stage"] == "canary"
    assert json.loads(text)["history"] == ["2", "1"]
    assert RolloutState.from_json(text) == state
    # fields a newer version added are ignored; missing ones take their defaults
    newer = json.dumps({**json.loads(text), "future_field": 1})
    assert RolloutState.from_json(newer) == state
    assert RolloutState.from_json('{"champion": "1"}') == RolloutState(
        champion="1", updated_at=RolloutState.from_json('{"champion": "1"}').updated_at
    )


def test_canary_share_is_zero_outside_canary() -> None:
    assert RolloutState(challenger="2", stage=Stage.CANARY, percent=25).canary_share == 0.25
    assert RolloutState(challenger="2", stage=Stage.SHADOW, percent=25).canary_share == 0.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"percent": -1.0}, "between 0 and 100"),
        ({"percent": 100.5}, "between 0 and 100"),
        ({"challenger": "2"}, "needs a stage"),
        ({"stage": Stage.SHADOW}, "needs a challenger"),
        ({"stage": Stage.CANARY, "percent": 5}, "needs a challenger"),
    ],
)
def test_invalid_states_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        RolloutState(**values)


def test_next_bumps_the_revision_and_records_who_and_why() -> None:
    state = RolloutState(champion="1", revision=3)
    new = state.next(actor="ann", reason="because", challenger="2", stage=Stage.SHADOW)
    assert (new.revision, new.updated_by, new.reason, new.challenger) == (4, "ann", "because", "2")
    assert state.revision == 3  # frozen: the old state is unchanged


# -------------------------------------------------------------------------------------------- actions


class _StubModel:
    """Enough of a TriageModel for the in-memory registry: a family and a save that writes a folder."""

    manifest = SimpleNamespace(family="tfidf")

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)


@pytest.fixture
def registry() -> InMemoryRegistry:
    """Versions 1-3 passed their gate, 4 failed it, 5 was never gated."""
    reg = InMemoryRegistry()
    for gate in ("pass", "pass", "pass", "fail", None):
        tags = {} if gate is None else {"deskpilot.gate": gate}
        reg.register(_StubModel(), name=NAME, record=RunRecord(params={}, metrics={}, tags=tags))  # type: ignore[arg-type]
    return reg


@pytest.fixture
def audit() -> InMemoryAuditLog:
    return InMemoryAuditLog()


def ref(version: str) -> ModelRef:
    return ModelRef(NAME, version=version)


def go(registry: InMemoryRegistry, audit: InMemoryAuditLog, version: str, to: str, **kw: Any) -> RolloutState:
    options: dict[str, Any] = {"percent": None, "actor": "ops", "reason": f"{version} to {to}"} | kw
    return promote(registry, audit, ref(version), to=to, **options)


def test_a_version_that_failed_or_skipped_its_gate_is_refused(
    registry: InMemoryRegistry, audit: InMemoryAuditLog
) -> None:
    for version, gate in (("4", "fail"), ("5", "none")):
        with pytest.raises(RolloutError, match="did not pass its gate") as refused:
            go(registry, audit, version, "shadow")
        assert refused.value.details == {"gate": gate}
    assert audit.entries() == []
    assert registry.model_tag(NAME, tags.ROLLOUT_STATE) is None


def test_force_needs_a_reason_and_is_audited_as_force_promote(
    registry: InMemoryRegistry, audit: InMemoryAuditLog
) -> None:
    with pytest.raises(UsageError, match="--force needs --reason"):
        go(registry, audit, "4", "shadow", force=True, reason="  ")
    state = go(registry, audit, "4", "shadow", force=True, reason="hotfix, gate flaky")
    assert (state.challenger, state.stage) == ("4", Stage.SHADOW)
    (entry,) = audit.entries()
    assert (entry.action, entry.target, entry.reason) == (
        "force_promote",
        f"models:/{NAME}/4",
        "hotfix, gate flaky",
    )
    assert entry.payload["gate"] == "fail"
    # forcing a version that passed anyway is a plain promotion
    go(registry, audit, "2", "canary", percent=5, force=True, reason="why not")
    assert audit.entries()[-1].action == "promote"


def test_shadow_canary_champion_rollback_sequence(
    registry: InMemoryRegistry, audit: InMemoryAuditLog
) -> None:
    first = go(registry, audit, "1", "champion")
    assert (first.champion, first.history, first.revision) == ("1", (), 1)
    assert registry.alias_version(NAME, CHAMPION) == "1"

    shadow = go(registry, audit, "2", "shadow")
    assert (shadow.challenger, shadow.stage, shadow.percent) == ("2", Stage.SHADOW, 0.0)
    canary = go(registry, audit, "2", "canary", percent=20)
    assert (canary.stage, canary.percent, canary.canary_share) == (Stage.CANARY, 20.0, 0.2)
    with pytest.raises(UsageError, match="--percent"):
        go(registry, audit, "2", "canary", percent=0)
    ramped = ramp(registry, audit, NAME, percent=50, actor="svc", reason="held")
    assert ramped.percent == 50
    with pytest.raises(RolloutError, match="no canary below 50"):
        ramp(registry, audit, NAME, percent=50, actor="svc", reason="again")

    champion = go(registry, audit, "2", "champion")
    assert (champion.champion, champion.challenger, champion.stage) == ("2", None, Stage.NONE)
    assert champion.history == ("1",)
    assert registry.alias_version(NAME, CHAMPION) == "2"
    with pytest.raises(RolloutError, match="already the champion"):
        go(registry, audit, "2", "champion")
    with pytest.raises(RolloutError, match="is the champion"):
        go(registry, audit, "2", "shadow")

    go(registry, audit, "3", "shadow")
    stopped = rollback(registry, audit, NAME, actor="ops", reason="stop the shadow")
    assert (stopped.champion, stopped.challenger, stopped.history) == ("2", None, ("1",))
    back = rollback(registry, audit, NAME, actor="svc", reason="breach", automatic=True)
    assert (back.champion, back.history) == ("1", ())
    assert registry.alias_version(NAME, CHAMPION) == "1"
    assert read_state(registry, NAME) == back

    actions = [(e.action, e.target) for e in audit.entries()]
    assert actions == [
        ("promote", f"models:/{NAME}/1"),
        ("promote", f"models:/{NAME}/2"),
        ("promote", f"models:/{NAME}/2"),
        ("ramp", f"models:/{NAME}/2"),
        ("promote", f"models:/{NAME}/2"),
        ("promote", f"models:/{NAME}/3"),
        ("rollback", f"models:/{NAME}/3"),
        ("auto_rollback", f"models:/{NAME}/1"),
    ]
    last = audit.entries()[-1]
    assert last.payload["before"]["champion"] == "2"
    assert last.payload["after"]["champion"] == "1"
    assert [e.payload["after"]["revision"] for e in audit.entries()] == list(range(1, 9))
    assert audit.verify().ok


def test_rollback_with_nothing_to_roll_back(registry: InMemoryRegistry, audit: InMemoryAuditLog) -> None:
    with pytest.raises(RolloutError, match="nothing to roll back"):
        rollback(registry, audit, NAME, actor="ops", reason="oops")
    go(registry, audit, "1", "champion")
    with pytest.raises(RolloutError, match="nothing to roll back"):
        rollback(registry, audit, NAME, actor="ops", reason="oops")
    assert [e.action for e in audit.entries()] == ["promote"]


def test_a_stale_revision_is_a_conflict_not_an_overwrite(
    registry: InMemoryRegistry, audit: InMemoryAuditLog
) -> None:
    go(registry, audit, "1", "champion")
    seen = read_state(registry, NAME)
    go(registry, audit, "2", "shadow")  # someone else moved first
    mine = seen.next(actor="me", reason="late", challenger="3", stage=Stage.CANARY, percent=10)
    with pytest.raises(RolloutConflictError, match="changed while this action was prepared") as conflict:
        write_state(registry, NAME, mine, expected_revision=seen.revision)
    assert conflict.value.code == "rollout_conflict"
    assert read_state(registry, NAME).challenger == "2"


class RacingRegistry(InMemoryRegistry):
    """While racing, every read of the state waits until ``parties`` writers have read it too: they all check
    the same revision, then all go on to write (what a plain read-check-write lets through)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)
        self.racing = False

    def model_tag(self, name: str, key: str) -> str | None:
        value = super().model_tag(name, key)
        if self.racing:
            self.barrier.wait()
        return value


def test_guards_racing_from_one_revision_roll_back_exactly_once(audit: InMemoryAuditLog) -> None:
    registry = RacingRegistry(parties=3)
    for _ in range(2):
        registry.register(_StubModel(), name=NAME, record=RunRecord({}, {}, {"deskpilot.gate": "pass"}))  # type: ignore[arg-type]
    go(registry, audit, "1", "champion")
    judged = go(registry, audit, "2", "canary", percent=50).revision
    registry.racing = True
    outcomes: list[object] = []

    def guard(replica: int) -> None:
        try:
            outcomes.append(
                rollback(
                    registry,
                    audit,
                    NAME,
                    actor=f"replica-{replica}",
                    reason="breach",
                    automatic=True,
                    expected_revision=judged,
                )
            )
        except RolloutConflictError as lost:
            outcomes.append(lost)

    threads = [threading.Thread(target=guard, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    won = [o for o in outcomes if isinstance(o, RolloutState)]
    assert len(outcomes) == 3, outcomes
    assert len(won) == 1, outcomes
    assert [e.action for e in audit.entries()].count("auto_rollback") == 1
    registry.racing = False
    state = read_state(registry, NAME)
    assert (state.champion, state.challenger, state.revision) == ("1", None, judged + 1)
    # a guard that judged the old revision finds it moved on: a conflict, never a step back from the champion
    with pytest.raises(RolloutConflictError, match="changed since it was judged"):
        rollback(
            registry, audit, NAME, actor="late", reason="breach", automatic=True, expected_revision=judged
        )
    assert read_state(registry, NAME).champion == "1"


def test_a_claim_abandoned_by_a_dead_writer_does_not_block_the_rollout(
    registry: InMemoryRegistry, audit: InMemoryAuditLog
) -> None:
    go(registry, audit, "1", "champion")
    go(registry, audit, "2", "canary", percent=10)
    real = registry.claim
    seen: list[str] = []

    def dead_writer_first(name: str, version: str, key: str, owner: str) -> str:
        seen.append(key)
        if len(seen) == 1:
            real(name, version, key, "0.000 crashed-before-writing")  # claimed in 1970, never written
        return real(name, version, key, owner)

    registry.claim = dead_writer_first  # type: ignore[method-assign]
    assert rollback(registry, audit, NAME, actor="ops", reason="stop").challenger is None
    assert [key.rpartition(".")[2] for key in seen] == ["0", "1"]
    # a fresh claim by another writer is a conflict
    go(registry, audit, "3", "shadow")
    seen.clear()

    def live_writer_first(name: str, version: str, key: str, owner: str) -> str:
        real(name, version, key, f"{time.time():.3f} someone-else")
        return real(name, version, key, owner)

    registry.claim = live_writer_first  # type: ignore[method-assign]
    with pytest.raises(RolloutConflictError, match="being changed by another writer"):
        rollback(registry, audit, NAME, actor="ops", reason="stop")
    assert read_state(registry, NAME).challenger == "3"


def test_read_state_before_any_promotion_follows_the_champion_alias(registry: InMemoryRegistry) -> None:
    assert read_state(registry, NAME) == RolloutState(updated_at=read_state(registry, NAME).updated_at)
    registry.set_alias(NAME, CHAMPION, "3")
    assert read_state(registry, NAME).champion == "3"


# ---------------------------------------------------------------------------------------------- split


def canary(percent: float) -> RolloutState:
    return RolloutState(champion="1", challenger="2", stage=Stage.CANARY, percent=percent)


def test_buckets_are_stable_and_in_range() -> None:
    keys = [f"ticket-{i}" for i in range(1000)]
    first = [bucket("acme", k) for k in keys]
    assert first == [bucket("acme", k) for k in keys]
    assert all(0 <= b < BUCKETS for b in first)
    assert first != [bucket("globex", k) for k in keys]  # the tenant is part of the key
    assert bucket("a", "bc") != bucket("ab", "c")  # the separator keeps the parts apart


def test_the_share_is_within_tolerance_and_nested() -> None:
    keys = [f"ticket-{i}" for i in range(20_000)]
    for percent in (1.0, 10.0, 30.0, 75.0):
        share = sum(to_challenger(canary(percent), "acme", k) for k in keys) / len(keys)
        p = percent / 100
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / len(keys)), (percent, share)
    # raising the share only adds tickets: none flips back to the champion
    ten = {k for k in keys if to_challenger(canary(10), "acme", k)}
    thirty = {k for k in keys if to_challenger(canary(30), "acme", k)}
    assert ten < thirty


def test_zero_and_full_share_and_other_stages() -> None:
    keys = [f"k{i}" for i in range(2000)]
    assert not any(to_challenger(canary(0.0), "acme", k) for k in keys)
    assert all(to_challenger(canary(100.0), "acme", k) for k in keys)
    shadow = RolloutState(champion="1", challenger="2", stage=Stage.SHADOW)
    assert not any(to_challenger(shadow, "acme", k) for k in keys)
    assert not any(to_challenger(RolloutState(champion="1"), "acme", k) for k in keys)


# ---------------------------------------------------------------------------------------------- rules

RULES = RolloutRules(
    min_requests=30,
    max_error_rate=0.05,
    max_p99_ms=500,
    max_disagreement=0.5,
    feedback_max_drop=0.05,
    feedback_min_samples=30,
    feedback_min_tenants=1,  # the by-hand z-test counts one source; the tenant rules: tests/security
    alpha=0.05,
)


def rules_hit(challenger: WindowStats, champion: WindowStats | None = None) -> dict[str, str]:
    return {b.rule: b.detail for b in breaches(RULES, challenger, champion or WindowStats())}


def test_error_rate_breach_by_hand() -> None:
    assert rules_hit(WindowStats(requests=100, errors=5)) == {}  # 5.0% is the limit, not over it
    found = rules_hit(WindowStats(requests=100, errors=6))
    assert found == {"error_rate": "6.0% of 100 calls failed (max 5.0%)"}


def test_latency_breach_by_hand() -> None:
    assert rules_hit(WindowStats(requests=30, p99_ms=500.0)) == {}
    assert rules_hit(WindowStats(requests=30, p99_ms=812.4)) == {"p99_latency": "p99 812 ms (max 500 ms)"}


def test_disagreement_breach_by_hand() -> None:
    assert rules_hit(WindowStats(compared=40, disagreements=20)) == {}  # 50% is the limit
    found = rules_hit(WindowStats(compared=40, disagreements=21))
    assert found == {"disagreement": "disagrees with the champion on 52.5% of 40 (max 50.0%)"}


def test_too_few_requests_give_no_verdict() -> None:
    everything_wrong = WindowStats(requests=29, errors=29, p99_ms=9999, compared=29, disagreements=29)
    assert rules_hit(everything_wrong) == {}
    # comparisons gate the disagreement rule on their own count, not on the request count
    assert set(rules_hit(WindowStats(requests=100, compared=29, disagreements=29))) == set()
    assert set(rules_hit(WindowStats(requests=10, compared=30, disagreements=30))) == {"disagreement"}


def test_feedback_z_test_by_hand() -> None:
    challenger = WindowStats(feedback=30, feedback_correct=20)
    champion = WindowStats(feedback=30, feedback_correct=29)
    # p1 = 2/3, p0 = 29/30, pooled = 49/60; se = sqrt(49/60 * 11/60 * (1/30 + 1/30)) = 0.099907
    # z = (29/30 - 2/3 - 0.05) / se = 0.25 / 0.099907 = 2.50232; one-sided p = erfc(z / √2) / 2 = 0.006169
    pooled = 49 / 60
    z = (29 / 30 - 2 / 3 - 0.05) / math.sqrt(pooled * (1 - pooled) * (2 / 30))
    assert z == pytest.approx(2.50232, abs=1e-5)
    p = 0.5 * math.erfc(z / math.sqrt(2))
    assert p == pytest.approx(0.006169, abs=1e-6)
    breach = feedback_drop(RULES, challenger, champion)
    assert breach is not None
    assert breach.rule == "feedback_accuracy"
    assert f"p={p:.3g}" in breach.detail
    assert "66.7% (n=30) vs champion 96.7% (n=30)" in breach.detail
    # a drop within the tolerated 5 points is no breach
    assert feedback_drop(RULES, WindowStats(feedback=30, feedback_correct=28), champion) is None


def test_feedback_needs_enough_samples_on_both_sides() -> None:
    worse = WindowStats(feedback=29, feedback_correct=0)
    assert feedback_drop(RULES, worse, WindowStats(feedback=100, feedback_correct=100)) is None
    assert (
        feedback_drop(RULES, WindowStats(feedback=100), WindowStats(feedback=29, feedback_correct=29)) is None
    )


# -------------------------------------------------------------------------------------------- monitor


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_windows_expire_with_the_clock() -> None:
    clock = FakeClock()
    monitor = RolloutMonitor(window_s=10.0, clock=clock)
    for latency in (10.0, 20.0):
        monitor.observe_call(Role.CHALLENGER, latency, error=False)
    monitor.observe_call(Role.CHALLENGER, 999.0, error=True)
    monitor.observe_call(Role.CHAMPION, 5.0, error=False)
    monitor.observe_comparison(
        champion_intent="a",
        challenger_intent="b",
        confidence_shift=0.1,
        champion_auto=True,
        challenger_auto=False,
    )
    monitor.observe_verdict("acme", "r1", {Role.CHALLENGER: False})
    now = monitor.stats(Role.CHALLENGER)
    assert (now.requests, now.errors, now.compared, now.disagreements, now.feedback) == (3, 1, 1, 1, 1)
    assert now.p99_ms == pytest.approx(19.9)  # failed calls carry no latency
    assert monitor.stats(Role.CHAMPION).requests == 1
    assert monitor.stats(Role.CHAMPION).compared == 0  # comparisons count for the challenger

    clock.now = 6.0
    monitor.observe_call(Role.CHALLENGER, 30.0, error=False)
    clock.now = 10.5  # the events at t=0 fell out of the 10 s window; the one at t=6 is still in
    later = monitor.stats(Role.CHALLENGER)
    assert (later.requests, later.errors, later.compared, later.feedback) == (1, 0, 0, 0)
    assert later.p99_ms == 30.0
    clock.now = 100.0
    assert monitor.stats(Role.CHALLENGER) == WindowStats()
    assert monitor.agreement.compared == 1  # totals are not windowed


def test_agreement_totals_and_reset() -> None:
    monitor = RolloutMonitor(window_s=60.0, clock=FakeClock())
    cases = [("a", "a", True, True), ("a", "b", True, False), ("b", "b", False, True), ("b", "b", True, True)]
    for champion, challenger, champion_auto, challenger_auto in cases:
        monitor.observe_comparison(
            champion_intent=champion,
            challenger_intent=challenger,
            confidence_shift=0.2,
            champion_auto=champion_auto,
            challenger_auto=challenger_auto,
        )
    monitor.observe_verdict("acme", "r1", {Role.CHAMPION: True, Role.CHALLENGER: False})
    monitor.observe_verdict("globex", "r1", {Role.CHAMPION: True, Role.CHALLENGER: True})
    totals = monitor.agreement.to_dict()
    assert totals["compared"] == 4
    assert totals["agreement_rate"] == 0.75
    assert totals["mean_confidence_shift"] == pytest.approx(0.2)
    assert totals["route_changes"] == {"auto_to_human": 1, "human_to_auto": 1}
    assert totals["least_agreed_intents"] == [
        {"intent": "a", "compared": 2, "agreement_rate": 0.5},
        {"intent": "b", "compared": 2, "agreement_rate": 1.0},
    ]
    assert totals["feedback"] == {
        "judged": 2,
        "tenants": 2,
        "champion_accuracy": 1.0,
        "challenger_accuracy": 0.5,
    }

    monitor.observe_call(Role.CHALLENGER, 1.0, error=True)
    monitor.reset()
    assert monitor.agreement.compared == 0
    assert monitor.agreement.to_dict()["agreement_rate"] is None
    assert monitor.stats(Role.CHALLENGER) == WindowStats()
