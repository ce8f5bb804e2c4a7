"""The gateway's budget ledger kept in the store, so every worker and restart sees the same spend."""

from __future__ import annotations

from deskpilot.copilot.gateway.budget import BudgetUsage
from deskpilot.copilot.gateway.config import BudgetLimit
from deskpilot.store.knowledge import KnowledgeStore


class StoreBudgetLedger:
    """:class:`deskpilot.copilot.gateway.budget.BudgetLedger` over :class:`KnowledgeStore`: one conditional
    UPDATE reserves, so concurrent calls from any number of processes cannot spend past a limit together."""

    def __init__(self, store: KnowledgeStore) -> None:
        self.store = store

    def reserve(self, tenant: str, period: str, tokens: int, cost_usd: float, limit: BudgetLimit) -> bool:
        return self.store.reserve_budget(
            tenant, period, tokens, cost_usd, max_tokens=limit.tokens, max_cost_usd=limit.cost_usd
        )

    def settle(
        self,
        tenant: str,
        period: str,
        reserved_tokens: int,
        reserved_cost_usd: float,
        used_tokens: int,
        used_cost_usd: float,
    ) -> None:
        self.store.settle_budget(
            tenant,
            period,
            reserved_tokens=reserved_tokens,
            reserved_cost=reserved_cost_usd,
            used_tokens=used_tokens,
            used_cost=used_cost_usd,
        )

    def usage(self, tenant: str, period: str) -> BudgetUsage:
        found = self.store.budget_usage(tenant, period)
        return BudgetUsage(
            spent_tokens=found.spent_tokens,
            spent_cost_usd=found.spent_cost,
            reserved_tokens=found.reserved_tokens,
            reserved_cost_usd=found.reserved_cost,
        )
