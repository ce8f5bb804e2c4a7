"""The rollout guard: evaluates the rollback rules every second and steps the challenger back on a breach.

A breach writes the rollback through the registry (so every replica follows) and the audit chain (so the
reason is kept), reports each broken rule (the service counts ``deskpilot_rollbacks_total{rule}``), logs it,
and reloads at once, so traffic is back on the champion within a second or two. With a ramp configured, a
canary that holds every rule for ``hold_s`` moves to the next share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from deskpilot.domain import Role
from deskpilot.errors import AuditWriteError, DeskPilotError, RolloutConflictError
from deskpilot.rollout.monitor import RolloutMonitor
from deskpilot.rollout.rules import Breach, RolloutRules, breaches
from deskpilot.rollout.state import RolloutState, Stage

logger = logging.getLogger(__name__)

RollbackAction = Callable[[str, int], RolloutState]  # reason, the revision judged -> new state
RampAction = Callable[[float], RolloutState]  # next percent -> new state


class ServedRollout(Protocol):
    """What the guard needs of the models serving (the service's ``ModelManager``)."""

    @property
    def state(self) -> RolloutState: ...

    @property
    def challenger(self) -> object | None: ...

    def refresh(self) -> bool: ...


class RolloutGuard:
    def __init__(
        self,
        models: ServedRollout,
        monitor: RolloutMonitor,
        rules: RolloutRules,
        *,
        rollback: RollbackAction,
        ramp: RampAction | None = None,
        on_new_challenger: Callable[[], None] | None = None,
        on_rollback: Callable[[str], None] | None = None,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.models = models
        self.monitor = monitor
        self.rules = rules
        self._on_rollback = on_rollback
        self._rollback = rollback
        self._ramp = ramp
        self._on_new_challenger = on_new_challenger
        self.interval_s = interval_s
        self._clock = clock
        self._watching: tuple[str | None, str | None] = (None, None)
        self._healthy_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_breaches: list[Breach] = []

    def start(self) -> None:
        state = self.models.state  # what serves now is not "new": keep what the monitor already saw
        self._watching = (state.challenger, str(state.stage))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="deskpilot-rollout-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:  # the guard must outlive one bad evaluation
                logger.exception("rollout guard check failed")

    async def check(self) -> list[Breach]:
        """One evaluation of the rules; returns the breaches that caused a rollback (empty otherwise)."""
        state = self.models.state
        self._follow(state)
        if state.stage is Stage.NONE or self.models.challenger is None:
            return []
        found = breaches(self.rules, self.monitor.stats(Role.CHALLENGER), self.monitor.stats(Role.CHAMPION))
        if found:
            await self._roll_back(found, state)
            return found
        await self._maybe_ramp(state)
        return []

    def _follow(self, state: RolloutState) -> None:
        watching = (state.challenger, str(state.stage))
        if watching != self._watching:
            self._watching = watching
            self._healthy_since = None
            self.monitor.reset()
            if self._on_new_challenger is not None:
                self._on_new_challenger()

    async def _roll_back(self, found: list[Breach], judged: RolloutState) -> None:
        reason = "automatic rollback: " + "; ".join(f"{b.rule}: {b.detail}" for b in found)
        self.last_breaches = found
        try:
            await asyncio.to_thread(self._rollback, reason, judged.revision)
        except RolloutConflictError as exc:  # not this guard's rollback: nothing to count
            logger.info(
                "rollout changed meanwhile (another replica or an operator); reloading",
                extra={"detail": exc.message},
            )
            await asyncio.to_thread(self.models.refresh)
            return
        except AuditWriteError as exc:  # done all the same: count it and reload, never roll back twice
            logger.error("rolled back, but unaudited: %s", exc.message)
        except DeskPilotError as exc:
            logger.error("automatic rollback failed: %s", exc.message)
            return
        if self._on_rollback is not None:
            for breach in found:
                self._on_rollback(breach.rule)
        logger.warning("rolled back the challenger", extra={"reason": reason})
        await asyncio.to_thread(self.models.refresh)

    async def _maybe_ramp(self, state: RolloutState) -> None:
        if self._ramp is None or state.stage is not Stage.CANARY or not self.rules.ramp:
            return
        if self.monitor.stats(Role.CHALLENGER).requests < self.rules.min_requests:
            return
        now = self._clock()
        if self._healthy_since is None:
            self._healthy_since = now
            return
        if now - self._healthy_since < self.rules.hold_s:
            return
        higher = [step for step in self.rules.ramp if step > state.percent]
        if not higher:
            return
        try:
            await asyncio.to_thread(self._ramp, higher[0])
        except AuditWriteError as exc:  # the share did change
            logger.error("canary ramped, but unaudited: %s", exc.message)
        except DeskPilotError as exc:
            logger.warning("canary ramp skipped: %s", exc.message)
            return
        logger.info("canary ramped", extra={"percent": higher[0]})
        self._healthy_since = None
        await asyncio.to_thread(self.models.refresh)
