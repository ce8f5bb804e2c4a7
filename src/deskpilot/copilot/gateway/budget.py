"""Per-tenant token and money budgets that concurrent calls cannot overrun.

Before a call the gateway *reserves* its worst case (a generous prompt estimate plus ``max_tokens``, at the
provider's prices) in one atomic check-and-add: ``spent + reserved + new <= limit``. Checking the spend and
adding it later, as some gateways do, lets N concurrent calls all pass the check and together overshoot; a
reservation cannot. After the call the reservation is *settled*: released, and what was really used is added
to the spend. The ledger is synchronous so that a SQL implementation can do the check-and-add in one
transaction; :class:`Budgets` calls it through :func:`asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from deskpilot.copilot.gateway.base import ChatRequest, Usage
from deskpilot.copilot.gateway.config import BudgetConfig, BudgetLimit, Period
from deskpilot.copilot.gateway.tokens import estimate_prompt_tokens, price_usd

_EPSILON_USD = 1e-9  # float sums of prices must not refuse a call that fits exactly


@dataclass(frozen=True)
class BudgetUsage:
    spent_tokens: int = 0
    spent_cost_usd: float = 0.0
    reserved_tokens: int = 0
    reserved_cost_usd: float = 0.0


class BudgetLedger(Protocol):
    """Where spend and open reservations live, per tenant and period (e.g. ``2025-06-01`` for a UTC day)."""

    def reserve(self, tenant: str, period: str, tokens: int, cost_usd: float, limit: BudgetLimit) -> bool:
        """Atomically: if spent + reserved + this reservation stays within ``limit`` on both sides (None is
        unlimited), add it to the reservations and return True; otherwise change nothing and return False."""
        ...

    def settle(
        self,
        tenant: str,
        period: str,
        reserved_tokens: int,
        reserved_cost_usd: float,
        used_tokens: int,
        used_cost_usd: float,
    ) -> None:
        """Atomically: remove a reservation made by :meth:`reserve` and add what the call really used."""
        ...

    def usage(self, tenant: str, period: str) -> BudgetUsage: ...


def fits(usage: BudgetUsage, tokens: int, cost_usd: float, limit: BudgetLimit) -> bool:
    """The reservation rule, shared by every ledger implementation."""
    if limit.tokens is not None and usage.spent_tokens + usage.reserved_tokens + tokens > limit.tokens:
        return False
    return not (
        limit.cost_usd is not None
        and usage.spent_cost_usd + usage.reserved_cost_usd + cost_usd > limit.cost_usd + _EPSILON_USD
    )


class InMemoryBudgetLedger:
    """A thread-safe ledger for one process. Keeps only each tenant's latest period, so memory stays bounded
    by the number of tenants; a settle for a forgotten period (a call that straddled midnight) is dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, tuple[str, BudgetUsage]] = {}

    def reserve(self, tenant: str, period: str, tokens: int, cost_usd: float, limit: BudgetLimit) -> bool:
        with self._lock:
            current = self._current(tenant, period)
            if not fits(current, tokens, cost_usd, limit):
                return False
            self._accounts[tenant] = (
                period,
                BudgetUsage(
                    current.spent_tokens,
                    current.spent_cost_usd,
                    current.reserved_tokens + tokens,
                    current.reserved_cost_usd + cost_usd,
                ),
            )
            return True

    def settle(
        self,
        tenant: str,
        period: str,
        reserved_tokens: int,
        reserved_cost_usd: float,
        used_tokens: int,
        used_cost_usd: float,
    ) -> None:
        with self._lock:
            account = self._accounts.get(tenant)
            if account is None or account[0] != period:
                return
            current = account[1]
            self._accounts[tenant] = (
                period,
                BudgetUsage(
                    current.spent_tokens + used_tokens,
                    current.spent_cost_usd + used_cost_usd,
                    max(0, current.reserved_tokens - reserved_tokens),
                    max(0.0, current.reserved_cost_usd - reserved_cost_usd),
                ),
            )

    def usage(self, tenant: str, period: str) -> BudgetUsage:
        with self._lock:
            account = self._accounts.get(tenant)
            return account[1] if account is not None and account[0] == period else BudgetUsage()

    def _current(self, tenant: str, period: str) -> BudgetUsage:
        account = self._accounts.get(tenant)
        if account is None or account[0] != period:
            return BudgetUsage()
        return account[1]


_PERIOD_FORMATS: dict[str, str] = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m"}


def period_key(when: datetime, period: Period) -> str:
    """The budget period ``when`` falls in, in UTC: ``2025-06-01T13``, ``2025-06-01`` or ``2025-06``."""
    return when.astimezone(UTC).strftime(_PERIOD_FORMATS[period])


@dataclass(frozen=True)
class Reservation:
    tenant: str
    period: str
    tokens: int
    cost_usd: float


class Budgets:
    """Turns a request into a reservation at one provider's prices, and settles it afterwards."""

    def __init__(
        self,
        config: BudgetConfig,
        ledger: BudgetLedger,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.ledger = ledger
        self._now = now

    def worst_case(self, request: ChatRequest, *, prompt_per_1k: float, completion_per_1k: float) -> Usage:
        prompt = estimate_prompt_tokens(
            request.messages,
            per_message=self.config.tokens_per_message,
            per_request=self.config.tokens_per_request,
        )
        cost = price_usd(
            prompt, request.max_tokens, prompt_per_1k=prompt_per_1k, completion_per_1k=completion_per_1k
        )
        return Usage(prompt, request.max_tokens, cost, estimated=True)

    async def reserve(
        self, request: ChatRequest, *, prompt_per_1k: float, completion_per_1k: float
    ) -> Reservation | None:
        """A reservation for the call's worst case, or None when the tenant's budget cannot cover it."""
        worst = self.worst_case(request, prompt_per_1k=prompt_per_1k, completion_per_1k=completion_per_1k)
        reservation = Reservation(
            request.tenant, period_key(self._now(), self.config.period), worst.total_tokens, worst.cost_usd
        )
        limit = self.config.limit_for(request.tenant)
        pending = asyncio.ensure_future(
            asyncio.to_thread(
                self.ledger.reserve,
                reservation.tenant,
                reservation.period,
                reservation.tokens,
                reservation.cost_usd,
                limit,
            )
        )
        try:
            granted = await asyncio.shield(pending)
        except asyncio.CancelledError:
            # the ledger call runs on in its thread; if it grants, give the reservation straight back
            pending.add_done_callback(lambda done: self._release_if_granted(done, reservation))
            raise
        return reservation if granted else None

    def _release_if_granted(self, done: asyncio.Future[bool], reservation: Reservation) -> None:
        if not done.cancelled() and done.exception() is None and done.result():
            self.settle_now(reservation, None)

    async def settle(self, reservation: Reservation, used: Usage | None) -> None:
        """Release the reservation and charge ``used`` (None: the call cost nothing we know of)."""
        await asyncio.to_thread(self.settle_now, reservation, used)

    def settle_now(self, reservation: Reservation, used: Usage | None) -> None:
        """The same, without leaving the event loop: for a cancelled call, whose task may not await again."""
        self.ledger.settle(
            reservation.tenant,
            reservation.period,
            reservation.tokens,
            reservation.cost_usd,
            used.total_tokens if used else 0,
            used.cost_usd if used else 0.0,
        )
