"""Why a ticket is in the agent's queue, in plain words, from the logged decision and the serving model."""

from __future__ import annotations

from typing import Any

from deskpilot.console.agent_view import Serving, excerpt, intent_label, short_reason, why_routed
from deskpilot.domain import Route
from deskpilot.store.records import DecisionRecord


class _Manifest:
    def __init__(self, threshold: float | None) -> None:
        self.threshold = threshold


class _Model:
    def __init__(self, classes: list[str], threshold: float | None) -> None:
        self.classes = classes
        self.manifest = _Manifest(threshold)


class _Loaded:
    def __init__(self, version: str, threshold: float | None, name: str = "triage") -> None:
        self.name = name
        self.version = version
        self.model = _Model(["card_arrival", "refund"], threshold)


def serving(*loaded: _Loaded) -> Serving:
    return Serving(tuple(loaded))  # type: ignore[arg-type]


def record(**changes: Any) -> DecisionRecord:
    values: dict[str, Any] = {
        "tenant": "acme",
        "request_id": "r1",
        "model_name": "triage",
        "model_version": "3",
        "intent": "refund",
        "confidence": 0.42,
        "route": Route.HUMAN,
        "latency_ms": 1.0,
        "text": "hello",
    }
    values.update(changes)
    return DecisionRecord(**values)


def labels(found: list[Any]) -> list[str]:
    return [why.label for why in found]


def test_below_the_serving_versions_threshold() -> None:
    found = why_routed(record(), serving(_Loaded("3", 0.8)))
    assert labels(found) == ["Below threshold"]
    assert "42%" in found[0].detail
    assert "80%" in found[0].detail
    assert short_reason(record()).label == "Low confidence"


def test_a_version_no_longer_serving_still_explains_itself() -> None:
    found = why_routed(record(), serving(_Loaded("4", 0.8)))
    assert labels(found) == ["Below threshold"]
    assert "no longer serving" in found[0].detail


def test_a_model_without_threshold_sends_everything_to_a_person() -> None:
    assert labels(why_routed(record(), serving(_Loaded("3", None)))) == ["No threshold"]


def test_the_fallback_answered() -> None:
    decision = record(fallback=True, reason="champion model exceeded its 2s budget", model_name="fallback")
    found = why_routed(decision, serving(_Loaded("3", 0.5, name="fallback")))
    assert labels(found) == ["Fallback model", "Below threshold"]
    assert "exceeded its 2s budget" in found[0].detail
    assert short_reason(decision).label == "Fallback"


def test_nobody_answered() -> None:
    decision = record(intent="", confidence=0.0, fallback=True, reason="all failed; routed to a person")
    found = why_routed(decision, serving(_Loaded("3", 0.5)))
    assert labels(found) == ["No model answered"]
    assert "all failed" in found[0].detail
    assert short_reason(decision).tone == "bad"


def test_an_intent_the_serving_models_do_not_know() -> None:
    found = why_routed(record(intent="old_queue"), serving(_Loaded("3", 0.8)))
    assert labels(found) == ["Below threshold", "Unknown intent"]


def test_the_audit_sample_of_auto_routes() -> None:
    decision = record(route=Route.AUTO, confidence=0.93, review_sample=True)
    found = why_routed(decision, serving(_Loaded("3", 0.8)))
    assert labels(found) == ["Audit sample"]
    assert "93%" in found[0].detail
    assert short_reason(decision).label == "Audit sample"


def test_an_auto_route_outside_the_sample_says_so() -> None:
    decision = record(route=Route.AUTO, confidence=0.93)
    found = why_routed(decision, serving(_Loaded("3", 0.8)))
    assert labels(found) == ["Automatic"]
    assert "93%" in found[0].detail
    assert "80%" in found[0].detail


def test_the_intents_a_verdict_may_name() -> None:
    assert serving(_Loaded("3", 0.8), _Loaded("4", 0.7)).intents == ["card_arrival", "refund"]
    assert serving().intents == []
    assert intent_label("__other__") == "None of these"
    assert intent_label(None) == "–"


def test_an_excerpt_is_one_short_line() -> None:
    assert excerpt("a\n\n b   c") == "a b c"
    long = excerpt("word " * 100, 20)
    assert len(long) <= 20
    assert long.endswith("…")
