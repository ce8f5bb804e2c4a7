"""The rollout guard with a fake clock and a stand-in model manager: rollback on a breach, ramp if healthy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from deskpilot.domain import Role
from deskpilot.errors import AuditWriteError, RolloutConflictError
from deskpilot.rollout.guard import RolloutGuard
from deskpilot.rollout.monitor import RolloutMonitor
from deskpilot.rollout.rules import RolloutRules
from deskpilot.rollout.state import RolloutState, Stage


@dataclass
class FakeModels:
    """What the guard reads of the model manager: the state and whether a challenger is loaded."""

    state: RolloutState
    challenger: object | None = "loaded"
    refreshes: int = 0
    broken_rules: list[str] = field(default_factory=list)  # what the guard reported, rollback by rollback

    def refresh(self) -> bool:
        self.refreshes += 1
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


RULES = RolloutRules(
    window_s=60, min_requests=5, max_error_rate=0.2, max_p99_ms=100, ramp=(10, 50), hold_s=30
)


def guard_for(state: RolloutState, clock: Clock) -> tuple[RolloutGuard, FakeModels, list[str], list[float]]:
    models = FakeModels(state)
    rollbacks: list[str] = []
    ramps: list[float] = []

    def rollback(reason: str, revision: int) -> RolloutState:
        assert revision == models.state.revision, "the guard names the revision it judged"
        rollbacks.append(reason)
        models.state = RolloutState(champion="1")
        models.challenger = None
        return models.state

    def ramp(percent: float) -> RolloutState:
        ramps.append(percent)
        models.state = replace(models.state, percent=percent)
        return models.state

    guard = RolloutGuard(
        models,  # type: ignore[arg-type]
        RolloutMonitor(window_s=60, clock=clock),
        RULES,
        rollback=rollback,
        ramp=ramp,
        on_rollback=models.broken_rules.append,
        clock=clock,
    )
    return guard, models, rollbacks, ramps


def canary(percent: float) -> RolloutState:
    return RolloutState(champion="1", challenger="2", stage=Stage.CANARY, percent=percent, revision=3)


def test_a_breach_rolls_back_once_with_the_measured_reason() -> None:
    clock = Clock()
    guard, models, rollbacks, _ = guard_for(canary(5), clock)
    assert asyncio.run(guard.check()) == []  # first look: starts watching this challenger
    for _ in range(4):
        guard.monitor.observe_call(Role.CHALLENGER, 10.0, error=True)
    assert asyncio.run(guard.check()) == [], "4 calls: fewer than min_requests, no verdict yet"
    guard.monitor.observe_call(Role.CHALLENGER, 10.0, error=True)
    found = asyncio.run(guard.check())
    assert [b.rule for b in found] == ["error_rate"]
    assert rollbacks == ["automatic rollback: error_rate: 100.0% of 5 calls failed (max 20.0%)"]
    assert models.broken_rules == ["error_rate"]
    assert models.refreshes == 1
    assert asyncio.run(guard.check()) == [], "no challenger any more: nothing to judge"


def test_a_healthy_canary_ramps_after_the_hold_time_and_stops_at_the_last_step() -> None:
    clock = Clock()
    guard, models, rollbacks, ramps = guard_for(canary(5), clock)
    asyncio.run(guard.check())
    for _ in range(5):
        guard.monitor.observe_call(Role.CHALLENGER, 10.0, error=False)
    asyncio.run(guard.check())  # healthy from now
    clock.now += 29
    asyncio.run(guard.check())
    assert ramps == [], "held 29 s of the required 30"
    clock.now += 2
    asyncio.run(guard.check())
    assert ramps == [10]
    assert models.state.percent == 10
    for _ in range(5):
        guard.monitor.observe_call(Role.CHALLENGER, 10.0, error=False)
    for step in (0, 31, 31, 31):
        clock.now += step
        for _ in range(5):
            guard.monitor.observe_call(Role.CHALLENGER, 10.0, error=False)
        asyncio.run(guard.check())
    assert ramps == [10, 50], "50% is the last step of the ramp"
    assert rollbacks == []


def test_a_new_challenger_starts_with_an_empty_window() -> None:
    clock = Clock()
    guard, models, rollbacks, _ = guard_for(canary(5), clock)
    asyncio.run(guard.check())
    for _ in range(5):
        guard.monitor.observe_call(Role.CHALLENGER, 10.0, error=True)
    models.state = replace(models.state, challenger="3")
    assert asyncio.run(guard.check()) == [], "the errors belonged to the previous challenger"
    assert rollbacks == []


def test_a_rollback_whose_audit_entry_failed_counts_as_done_and_is_not_repeated() -> None:
    clock = Clock()
    guard, models, rollbacks, _ = guard_for(canary(5), clock)
    done = guard._rollback

    def rollback_then_audit_fails(reason: str, revision: int) -> RolloutState:
        done(reason, revision)  # the state changed...
        raise AuditWriteError("the audit entry could not be written: schema behind (done all the same)")

    guard._rollback = rollback_then_audit_fails
    asyncio.run(guard.check())
    for _ in range(5):
        guard.monitor.observe_call(Role.CHALLENGER, 10.0, error=True)
    assert asyncio.run(guard.check())
    assert (len(rollbacks), models.broken_rules, models.refreshes) == (1, ["error_rate"], 1)
    assert asyncio.run(guard.check()) == [], "the challenger is gone: nothing more to roll back"
    assert len(rollbacks) == 1


def test_a_rollback_another_replica_made_first_is_not_counted_here() -> None:
    """Several replicas judge the same breach; the one whose rollback lost reloads and counts nothing."""
    clock = Clock()
    guard, models, rollbacks, _ = guard_for(canary(5), clock)
    judged: list[int] = []

    def lost(reason: str, revision: int) -> RolloutState:
        judged.append(revision)
        raise RolloutConflictError("the rollout changed since it was judged")

    guard._rollback = lost
    asyncio.run(guard.check())
    for _ in range(5):
        guard.monitor.observe_call(Role.CHALLENGER, 10.0, error=True)
    assert asyncio.run(guard.check())
    assert judged == [models.state.revision]
    assert (rollbacks, models.broken_rules, models.refreshes) == ([], [], 1)
