"""ModelManager on the in-memory registry: champion, challenger and fallback follow the rollout state; a bad
candidate never replaces what serves; every swap and failure is reported with the right model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from deskpilot.domain import ModelRef, Role, RoutingThreshold
from deskpilot.errors import RegistryError
from deskpilot.models.artifact import TriageModel
from deskpilot.models.tfidf import TfidfClassifier
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.rollout.actions import promote, rollback
from deskpilot.rollout.state import Stage
from deskpilot.service.models import LOAD_FAILED, LOADED, LoadedModel, ModelManager
from deskpilot.store.audit import InMemoryAuditLog
from tests.unit.service_fakes import (
    FAIL,
    MODEL_NAME,
    NAN,
    SHAPE,
    ScriptedClassifier,
    installed,
    register,
    scripted_model,
)

NAME = MODEL_NAME
TOPICS = {
    "card": ["my card was lost", "card stolen yesterday", "block my card", "new card never arrived"],
    "refund": ["I want a refund", "refund my payment", "money back for my order", "refund not received"],
    "login": ["cannot log in", "password reset link broken", "locked out of my account", "forgot password"],
}


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from installed(monkeypatch)


@pytest.fixture(scope="module")
def tfidf() -> TriageModel:
    """A real TF-IDF model fitted on a dozen texts (tens of milliseconds)."""
    texts = [t for examples in TOPICS.values() for t in examples]
    labels = [label for label, examples in TOPICS.items() for _ in examples]
    classifier = TfidfClassifier(char_min_df=1).fit(texts, labels)
    return TriageModel.build(classifier, RoutingThreshold(0.5, 0.9, 0.5, 0.9, 12))


@dataclass
class Events:
    seen: list[tuple[str, Role, LoadedModel | None, str]] = field(default_factory=list)

    def __call__(self, event: str, role: Role, loaded: LoadedModel | None, detail: str) -> None:
        self.seen.append((event, role, loaded, detail))

    def of(self, event: str, role: Role) -> list[tuple[LoadedModel | None, str]]:
        return [(loaded, detail) for e, r, loaded, detail in self.seen if e == event and r is role]


@pytest.fixture
def registry() -> InMemoryRegistry:
    return InMemoryRegistry()


@pytest.fixture
def audit() -> InMemoryAuditLog:
    return InMemoryAuditLog()


def manager_of(registry: InMemoryRegistry) -> tuple[ModelManager, Events]:
    events = Events()
    return ModelManager(registry, NAME, on_event=events), events


def to(
    registry: InMemoryRegistry,
    audit: InMemoryAuditLog,
    version: str,
    stage: str,
    percent: float | None = None,
) -> None:
    promote(
        registry, audit, ModelRef(NAME, version=version), to=stage, percent=percent, actor="t", reason="t"
    )


def uri(version: str) -> str:
    return f"models:/{NAME}/{version}"


def test_refresh_loads_the_champion_from_the_alias_and_reports_it(
    registry: InMemoryRegistry, tfidf: TriageModel
) -> None:
    register(registry, tfidf)
    registry.set_alias(NAME, "champion", "1")  # no rollout state yet: the alias alone names the champion
    manager, events = manager_of(registry)
    assert manager.serving(Role.CHAMPION) is None
    assert manager.refresh() is True
    champion = manager.champion
    assert champion is not None
    assert (champion.version, champion.uri, champion.family) == ("1", uri("1"), "tfidf")
    assert manager.serving(Role.CHAMPION) is champion
    assert manager.state.champion == "1"
    assert manager.last_error is None
    assert events.of(LOADED, Role.CHAMPION) == [(champion, uri("1"))]
    assert manager.refresh() is False, "nothing moved: nothing reloaded"
    assert len(events.of(LOADED, Role.CHAMPION)) == 1


def test_refresh_follows_a_promotion_to_champion(
    registry: InMemoryRegistry, audit: InMemoryAuditLog, tfidf: TriageModel
) -> None:
    register(registry, scripted_model())
    register(registry, scripted_model(confidence=0.8))
    to(registry, audit, "1", "champion")
    manager, events = manager_of(registry)
    manager.refresh()
    to(registry, audit, "2", "champion")
    assert manager.refresh() is True
    champion = manager.champion
    assert champion is not None
    assert champion.version == "2"
    assert [(loaded.version if loaded else None, d) for loaded, d in events.of(LOADED, Role.CHAMPION)] == [
        ("1", uri("1")),
        ("2", uri("2")),
    ]
    assert events.of(LOADED, Role.CHAMPION)[-1][0] is champion


def test_no_champion_set_is_a_load_failure_with_the_reason(registry: InMemoryRegistry) -> None:
    register(registry, scripted_model())
    manager, events = manager_of(registry)
    assert manager.refresh() is False
    assert manager.champion is None
    assert manager.last_error is not None
    assert f"models:/{NAME}@champion is not set" in manager.last_error
    assert events.of(LOAD_FAILED, Role.CHAMPION) == [(None, manager.last_error)]


class UnknownFamily(ScriptedClassifier):
    family = "no-such-family"  # saves fine; the registry cannot load it back


@pytest.mark.parametrize(
    ("bad", "symptom"),
    [
        pytest.param("unloadable", "unknown model family", id="fails-to-load"),
        pytest.param(FAIL, "scripted failure", id="smoke-test-raises"),
        pytest.param(NAN, "non-finite", id="nan-probabilities"),
        pytest.param(SHAPE, "shape", id="wrong-shape"),
    ],
)
def test_a_bad_champion_candidate_never_replaces_the_serving_one(
    registry: InMemoryRegistry, audit: InMemoryAuditLog, bad: str, symptom: str
) -> None:
    register(registry, scripted_model())
    if bad == "unloadable":
        classifier = UnknownFamily().fit(["a", "b"], ["a", "b"])
        register(registry, TriageModel.build(classifier, RoutingThreshold(0.5, 0.9, 0.5, 0.9, 2)))
    else:
        register(registry, scripted_model(mode=bad))
    register(registry, scripted_model(confidence=0.7))
    to(registry, audit, "1", "champion")
    manager, events = manager_of(registry)
    manager.refresh()
    serving = manager.champion
    to(registry, audit, "2", "champion")

    assert manager.refresh() is False
    assert manager.champion is serving, "the candidate failed: the old champion keeps serving"
    assert manager.last_error is not None
    assert f"{uri('2')} failed to load" in manager.last_error
    assert symptom in manager.last_error
    failed = events.of(LOAD_FAILED, Role.CHAMPION)
    assert failed == [(None, manager.last_error)]
    assert manager.state.champion == "1", "the state served is the one whose champion is loaded"

    to(registry, audit, "3", "champion")
    assert manager.refresh() is True
    assert manager.champion is not None
    assert manager.champion.version == "3"
    assert manager.last_error is None, "a good champion clears the error"


def test_the_challenger_is_loaded_in_shadow_and_canary_and_dropped_after_rollback(
    registry: InMemoryRegistry, audit: InMemoryAuditLog, tfidf: TriageModel
) -> None:
    for confidence in (0.9, 0.8):
        register(registry, scripted_model(confidence=confidence))
    register(registry, tfidf)  # version 3: the fallback (newest tfidf), so each role has its own model
    to(registry, audit, "1", "champion")
    manager, events = manager_of(registry)
    manager.refresh()
    assert manager.serving(Role.CHALLENGER) is None

    to(registry, audit, "2", "shadow")
    assert manager.refresh() is True
    challenger = manager.serving(Role.CHALLENGER)
    assert challenger is not None
    assert challenger.version == "2"
    assert manager.challenger is challenger
    assert (manager.state.stage, manager.state.challenger) == (Stage.SHADOW, "2")

    to(registry, audit, "2", "canary", percent=25)
    assert manager.refresh() is False, "the same challenger: the state moves, no model is reloaded"
    assert manager.challenger is challenger
    assert (manager.state.stage, manager.state.percent) == (Stage.CANARY, 25.0)

    roles = {role: manager.serving(role) for role in Role}
    assert [m.version if m else None for m in roles.values()] == ["1", "2", "3"]
    assert roles[Role.CHAMPION] is manager.champion
    assert roles[Role.FALLBACK] is manager.fallback

    for role in Role:
        reported = events.of(LOADED, role)
        assert len(reported) == 1, role
        loaded, detail = reported[0]
        assert loaded is roles[role], f"the {role} event carries the {role} model"
        assert loaded is not None
        assert detail == uri(loaded.version)

    rollback(registry, audit, NAME, actor="t", reason="t")
    manager.refresh()
    assert manager.serving(Role.CHALLENGER) is None
    assert (manager.state.stage, manager.state.challenger) == (Stage.NONE, None)
    assert manager.champion is roles[Role.CHAMPION]
    assert manager.challenger is None


def test_a_challenger_that_fails_to_load_serves_no_traffic(
    registry: InMemoryRegistry, audit: InMemoryAuditLog
) -> None:
    register(registry, scripted_model())
    register(registry, scripted_model(mode=NAN))
    to(registry, audit, "1", "champion")
    to(registry, audit, "2", "canary", percent=50)
    manager, events = manager_of(registry)
    manager.refresh()
    assert manager.champion is not None
    assert manager.challenger is None
    assert manager.state.stage is Stage.NONE, "no canary share goes to a challenger that is not loaded"
    assert manager.state.canary_share == 0.0
    [(loaded, detail)] = events.of(LOAD_FAILED, Role.CHALLENGER)
    assert loaded is None
    assert f"{uri('2')} failed to load" in detail
    assert events.of(LOADED, Role.CHALLENGER) == []


@pytest.mark.parametrize(
    ("gates", "expected"),
    [
        pytest.param(["pass", "pass", "fail"], "2", id="newest-not-failed"),
        pytest.param(["pass", "fail", None], "3", id="never-gated-counts"),
        pytest.param(["fail", "fail", "fail"], None, id="all-failed"),
    ],
)
def test_the_fallback_is_the_newest_tfidf_version_not_failed_at_its_gate(
    registry: InMemoryRegistry, tfidf: TriageModel, gates: list[str | None], expected: str | None
) -> None:
    for gate in gates:
        register(registry, tfidf, gate=gate)
    register(registry, scripted_model())  # newest of all, but not tfidf
    registry.set_alias(NAME, "champion", "4")
    manager, events = manager_of(registry)
    manager.refresh()
    fallback = manager.fallback
    assert (fallback.version if fallback else None) == expected
    assert manager.serving(Role.FALLBACK) is fallback
    if fallback is not None:
        assert fallback.family == "tfidf"
        assert events.of(LOADED, Role.FALLBACK) == [(fallback, uri(fallback.version))]
    else:
        assert events.of(LOADED, Role.FALLBACK) == []


def test_an_explicit_fallback_alias_wins_and_reuses_a_loaded_champion(
    registry: InMemoryRegistry, tfidf: TriageModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("deskpilot.service.models.FALLBACK_RECHECK_S", 0.0)
    register(registry, scripted_model())
    register(registry, tfidf)
    registry.set_alias(NAME, "champion", "1")
    manager, events = manager_of(registry)
    manager.refresh()
    assert manager.fallback is not None
    assert manager.fallback.version == "2"

    registry.set_alias(NAME, "fallback", "1")  # not tfidf, but named explicitly
    assert manager.refresh() is True
    assert manager.fallback is manager.champion, "the champion's version: no second copy is loaded"
    assert [loaded.version if loaded else None for loaded, _ in events.of(LOADED, Role.FALLBACK)] == [
        "2",
        "1",
    ]


def test_the_fallback_list_is_not_reread_on_every_poll(
    registry: InMemoryRegistry, tfidf: TriageModel
) -> None:
    register(registry, tfidf)
    registry.set_alias(NAME, "champion", "1")
    manager, _ = manager_of(registry)
    manager.refresh()
    register(registry, tfidf)  # a newer tfidf version appears
    manager.refresh()
    assert manager.fallback is not None
    assert manager.fallback.version == "1", "rechecked after FALLBACK_RECHECK_S, not on every poll"


class FlakyRegistry(InMemoryRegistry):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def model_tag(self, name: str, key: str) -> str | None:
        if self.down:
            raise RegistryError("tracking server unreachable")
        return super().model_tag(name, key)


def test_an_unreachable_registry_keeps_the_models_serving() -> None:
    registry = FlakyRegistry()
    register(registry, scripted_model())
    registry.set_alias(NAME, "champion", "1")
    manager, events = manager_of(registry)
    manager.refresh()
    champion = manager.champion
    registry.down = True
    assert manager.refresh() is False
    assert manager.champion is champion
    assert manager.last_error is not None
    assert "registry unreachable" in manager.last_error
    assert events.of(LOAD_FAILED, Role.CHAMPION)[-1] == (None, manager.last_error)


def test_no_challenger_traffic_while_no_champion_could_be_loaded(
    registry: InMemoryRegistry, audit: InMemoryAuditLog
) -> None:
    """As ``_refresh_challenger`` means it: the champion could not be loaded, so the challenger serves no
    traffic (a canary share of a rollout whose baseline is missing, judged against nothing)."""
    register(registry, scripted_model(mode=NAN))  # the champion: fails its smoke test at every start
    register(registry, scripted_model(confidence=0.8))
    to(registry, audit, "1", "champion")
    to(registry, audit, "2", "canary", percent=50)
    manager, _ = manager_of(registry)
    manager.refresh()
    assert manager.champion is None
    assert manager.challenger is None
    assert manager.state.stage is Stage.NONE
    assert manager.state.canary_share == 0.0
