"""Cost control: whether a suggestion may call an LLM at all, decided before anything is spent.

The extractive draft is free and often good enough. An intent whose extractive drafts agents send unchanged
at least ``skip_when_accepted`` of the time (over at least ``min_verdicts`` verdicts) keeps getting them; so
do routes the operator excludes. Budgets are enforced later, by the gateway's reservation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deskpilot.store.knowledge import Acceptance

EXTRACTIVE = "extractive"


@dataclass(frozen=True)
class PolicyConfig:
    skip_when_accepted: float = 0.8
    min_verdicts: int = 20
    llm_for_human_routes: bool = True


@dataclass(frozen=True)
class PolicyDecision:
    use_llm: bool
    reason: str


def decide(
    *,
    llm_configured: bool,
    intent: str,
    route: str,
    acceptance: Mapping[tuple[str, str], Acceptance],
    config: PolicyConfig,
) -> PolicyDecision:
    if not llm_configured:
        return PolicyDecision(False, "no LLM is configured")
    if route != "auto" and not config.llm_for_human_routes:
        return PolicyDecision(False, "the policy keeps the LLM off tickets routed to a person")
    template = acceptance.get((intent, EXTRACTIVE))
    if (
        template is not None
        and template.total >= config.min_verdicts
        and template.rate >= config.skip_when_accepted
    ):
        return PolicyDecision(
            False,
            f"agents send {template.rate:.0%} of this intent's template drafts unchanged "
            f"(at least {config.skip_when_accepted:.0%} over {template.total} verdicts)",
        )
    return PolicyDecision(True, "the policy allows an LLM draft")
