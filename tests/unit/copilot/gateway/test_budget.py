"""Budgets: reserve the worst case atomically, settle the actual; concurrent calls never overrun a limit."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest

from deskpilot.copilot.gateway.base import ChatMessage, ChatRequest, Usage
from deskpilot.copilot.gateway.budget import (
    Budgets,
    BudgetUsage,
    InMemoryBudgetLedger,
    Reservation,
    fits,
    period_key,
)
from deskpilot.copilot.gateway.config import BudgetConfig, BudgetLimit
from deskpilot.copilot.gateway.tokens import estimate_prompt_tokens, estimate_text_tokens, price_usd

DAY = "2025-06-01"


def request(text: str = "hello", *, tenant: str = "acme", max_tokens: int = 100) -> ChatRequest:
    return ChatRequest((ChatMessage("user", text),), tenant=tenant, max_tokens=max_tokens)


def test_estimates_err_high() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("abcdefghi") == 3
    assert estimate_text_tokens("abcdefghij") == 4
    assert estimate_text_tokens("日本語") == 5, "9 UTF-8 bytes count half: more tokens than characters"
    messages = [ChatMessage("system", "abc"), ChatMessage("user", "abcdef")]
    assert estimate_prompt_tokens(messages) == 3 + (4 + 1) + (4 + 2)
    assert price_usd(1000, 500, prompt_per_1k=0.5, completion_per_1k=2.0) == pytest.approx(1.5)


def test_periods_are_utc() -> None:
    late = datetime(2025, 6, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert period_key(late, "day") == "2025-06-02"
    assert period_key(late, "hour") == "2025-06-02T01"
    assert period_key(late, "month") == "2025-06"


def test_the_reservation_rule_counts_spend_and_open_reservations() -> None:
    usage = BudgetUsage(spent_tokens=60, spent_cost_usd=0.6, reserved_tokens=30, reserved_cost_usd=0.3)
    assert fits(usage, 10, 0.1, BudgetLimit(tokens=100, cost_usd=1.0))
    assert not fits(usage, 11, 0.0, BudgetLimit(tokens=100))
    assert not fits(usage, 0, 0.11, BudgetLimit(cost_usd=1.0))
    assert fits(usage, 10**9, 10.0**9, BudgetLimit())


def test_reserve_then_settle_releases_the_unused_part() -> None:
    ledger = InMemoryBudgetLedger()
    limit = BudgetLimit(tokens=100)
    assert ledger.reserve("acme", DAY, 80, 0.0, limit)
    assert not ledger.reserve("acme", DAY, 30, 0.0, limit), "80 reserved + 30 > 100"
    ledger.settle("acme", DAY, 80, 0.0, 25, 0.0)
    assert ledger.usage("acme", DAY) == BudgetUsage(spent_tokens=25)
    assert ledger.reserve("acme", DAY, 75, 0.0, limit)
    assert not ledger.reserve("acme", DAY, 1, 0.0, limit)
    assert ledger.usage("globex", DAY) == BudgetUsage(), "tenants are separate"


def test_a_new_period_starts_empty_and_the_old_one_is_forgotten() -> None:
    ledger = InMemoryBudgetLedger()
    assert ledger.reserve("acme", DAY, 100, 0.0, BudgetLimit(tokens=100))
    assert ledger.reserve("acme", "2025-06-02", 100, 0.0, BudgetLimit(tokens=100))
    ledger.settle("acme", DAY, 100, 0.0, 100, 0.0)  # straddled midnight: dropped, not charged to today
    assert ledger.usage("acme", "2025-06-02") == BudgetUsage(reserved_tokens=100)
    assert ledger.usage("acme", DAY) == BudgetUsage()


def test_threads_hammering_one_ledger_never_exceed_the_limit() -> None:
    ledger = InMemoryBudgetLedger()
    limit = BudgetLimit(tokens=1000, cost_usd=1.0)
    barrier = threading.Barrier(16)

    def worker(_: int) -> int:
        barrier.wait()
        granted = 0
        for _ in range(50):
            if ledger.reserve("acme", DAY, 7, 0.007, limit):
                granted += 1
                ledger.settle("acme", DAY, 7, 0.007, 7, 0.007)
        return granted

    with ThreadPoolExecutor(16) as pool:
        granted = sum(pool.map(worker, range(16)))
    usage = ledger.usage("acme", DAY)
    assert granted == 142 == usage.spent_tokens // 7, "1000 // 7 calls fit, no more"
    assert usage.reserved_tokens == 0
    assert usage.spent_cost_usd <= 1.0 + 1e-9


def test_limits_per_tenant_override_the_default() -> None:
    config = BudgetConfig(
        default=BudgetLimit(tokens=1000), per_tenant={"big": None, "small": BudgetLimit(cost_usd=0.5)}
    )
    assert config.limit_for("anyone") == BudgetLimit(tokens=1000)
    assert config.limit_for("big") == BudgetLimit()
    assert config.limit_for("small") == BudgetLimit(cost_usd=0.5)
    assert BudgetConfig().limit_for("anyone") == BudgetLimit()


def test_budgets_reserve_the_worst_case_at_the_providers_prices() -> None:
    ledger = InMemoryBudgetLedger()
    budgets = Budgets(
        BudgetConfig(default=BudgetLimit(cost_usd=1.0)),
        ledger,
        now=lambda: datetime(2025, 6, 1, 8, tzinfo=UTC),
    )
    req = request("x" * 300, max_tokens=200)
    prompt = 3 + 4 + 100
    reservation = asyncio.run(budgets.reserve(req, prompt_per_1k=1.0, completion_per_1k=2.0))
    assert reservation == Reservation("acme", DAY, prompt + 200, pytest.approx((prompt + 400) / 1000))
    asyncio.run(budgets.settle(reservation, Usage(90, 10, 0.11)))
    assert ledger.usage("acme", DAY) == BudgetUsage(100, pytest.approx(0.11), 0, pytest.approx(0.0))
    expensive = request("x" * 300, max_tokens=2000)
    assert asyncio.run(budgets.reserve(expensive, prompt_per_1k=1.0, completion_per_1k=2.0)) is None


def test_a_reservation_granted_while_its_caller_was_cancelled_is_given_back() -> None:
    gate = threading.Event()

    class SlowLedger(InMemoryBudgetLedger):
        def __init__(self) -> None:
            super().__init__()
            self.answered = threading.Event()

        def reserve(self, tenant: str, period: str, tokens: int, cost_usd: float, limit: BudgetLimit) -> bool:
            gate.wait(5)
            granted = super().reserve(tenant, period, tokens, cost_usd, limit)
            self.answered.set()
            return granted

    ledger = SlowLedger()
    budgets = Budgets(BudgetConfig(), ledger, now=lambda: datetime(2025, 6, 1, tzinfo=UTC))

    async def scenario() -> BudgetUsage:
        task = asyncio.create_task(budgets.reserve(request(), prompt_per_1k=0, completion_per_1k=0))
        await asyncio.sleep(0.01)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(ledger.answered.wait, 5)
        await asyncio.sleep(0.01)  # the release runs as a callback on the loop
        return ledger.usage("acme", DAY)

    assert asyncio.run(scenario()) == BudgetUsage()
