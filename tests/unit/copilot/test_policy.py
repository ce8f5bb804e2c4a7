"""The cost policy: when a suggestion may call an LLM at all."""

from __future__ import annotations

import pytest

from deskpilot.copilot.policy import EXTRACTIVE, PolicyConfig, decide
from deskpilot.store.knowledge import Acceptance

CONFIG = PolicyConfig(skip_when_accepted=0.8, min_verdicts=20, llm_for_human_routes=True)


def verdicts(accepted: int, edited: int = 0, rejected: int = 0, provider: str = EXTRACTIVE) -> dict:
    return {("card_arrival", provider): Acceptance(accepted=accepted, edited=edited, rejected=rejected)}


def use_llm(**changes: object) -> bool:
    arguments: dict = {
        "llm_configured": True,
        "intent": "card_arrival",
        "route": "auto",
        "acceptance": {},
        "config": CONFIG,
    }
    arguments.update(changes)
    return decide(**arguments).use_llm


def test_without_an_llm_the_draft_is_extractive() -> None:
    decision = decide(llm_configured=False, intent="x", route="auto", acceptance={}, config=CONFIG)
    assert not decision.use_llm
    assert decision.reason == "no LLM is configured"


def test_an_llm_is_used_by_default() -> None:
    decision = decide(llm_configured=True, intent="x", route="auto", acceptance={}, config=CONFIG)
    assert decision.use_llm
    assert use_llm(route="human")


def test_the_operator_can_keep_the_llm_off_person_routes() -> None:
    off = PolicyConfig(llm_for_human_routes=False)
    assert not use_llm(route="human", config=off)
    assert use_llm(route="auto", config=off)


@pytest.mark.parametrize(
    ("acceptance", "expected"),
    [
        (verdicts(16, 4), False),  # 80% over 20 verdicts: the template draft is good enough
        (verdicts(20), False),
        (verdicts(15, 5), True),  # 75%
        (verdicts(19), True),  # 100%, but fewer verdicts than needed
        (verdicts(16, 2, 2, provider="openai"), True),  # the LLM's own acceptance does not count
        ({("lost_card", EXTRACTIVE): Acceptance(accepted=40)}, True),  # another intent's does not either
    ],
)
def test_a_well_accepted_template_intent_skips_the_llm(acceptance: dict, expected: bool) -> None:
    assert use_llm(acceptance=acceptance) is expected


def test_the_skip_reason_names_the_rate_and_the_verdicts() -> None:
    decision = decide(
        llm_configured=True, intent="card_arrival", route="auto", acceptance=verdicts(18, 2), config=CONFIG
    )
    assert not decision.use_llm
    assert "90%" in decision.reason
    assert "20 verdicts" in decision.reason
