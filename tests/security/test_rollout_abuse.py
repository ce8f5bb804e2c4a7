"""One tenant must not be able to roll a release back for every tenant (finding 2).

The attack as reported: a tenant posts the same verdict on the same decision over and over (the store
upserted, the monitor counted every post), names any intent it likes, and picks ticket ids that land on the
canary's challenger; 2 triage requests and 70 feedback posts rolled a canary back although both models had
answered the same intent. Unit tests on the service fakes first, then the reported attack on a real server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deskpilot.api.app import Overrides, create_app
from deskpilot.config import Settings
from deskpilot.domain import ModelRef, Role, Route, Ticket
from deskpilot.errors import PolicyError
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.rollout.actions import promote, ramp, read_state
from deskpilot.rollout.monitor import RolloutMonitor
from deskpilot.rollout.render import headline_lines, render_html
from deskpilot.rollout.report import build_report
from deskpilot.rollout.rules import (
    RolloutRules,
    TenantCounts,
    WindowStats,
    breaches,
    feedback_drop,
    parse_rollout_rules,
)
from deskpilot.rollout.split import BUCKETS, bucket, to_challenger
from deskpilot.service.triage import Answer, TriageService
from deskpilot.store.audit import InMemoryAuditLog
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.records import ShadowPair
from tests.live_server import LiveServer, serve
from tests.unit.service_fakes import MODEL_NAME, installed, register, scripted_model
from tests.unit.test_service_core import CHALLENGER, CHAMPION, Harness, build, until

DEFAULT_RULES = RolloutRules()  # the packaged policy's numbers: min 30 verdicts a side, 2 tenants, cap 100


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from installed(monkeypatch)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = build()
    yield harness
    harness.writer.close(1.0)
    harness.shadow_writer.close(1.0)


async def ask(service: TriageService, tenant: str, n: int, *, text: str = "my card") -> list[Answer]:
    tickets = [Ticket(text, id=f"{tenant}-{i}") for i in range(n)]
    return await service.triage(tenant, tickets)


async def claim_challenger_wrong(service: TriageService, tenant: str, answers: list[Answer]) -> None:
    """The attack's verdicts: the champion's answers right, the challenger's (the same intent) wrong."""
    for answer in answers:
        decision = answer.decision
        wrong = decision.model_version == CHALLENGER
        verdict = "billing" if wrong else decision.prediction.intent
        await service.feedback(tenant, decision.request_id, verdict)


def feedback_breach(monitor: RolloutMonitor, rules: RolloutRules = DEFAULT_RULES) -> list[str]:
    found = breaches(rules, monitor.stats(Role.CHALLENGER), monitor.stats(Role.CHAMPION))
    return [b.rule for b in found if b.rule == "feedback_accuracy"]


# ------------------------------------------------------------------------------------ one verdict each


def test_the_reported_attack_repeats_count_once_and_roll_nothing_back(h: Harness) -> None:
    """2 triage requests (one per side) and 70 feedback posts: 1 verdict a side, no breach."""
    h.stage("canary", 50)

    async def scenario(service: TriageService) -> None:
        answers: dict[str, Answer] = {}
        i = 0
        while len(answers) < 2:  # the attacker reads model_version to find one answer of each side
            [answer] = await service.triage("acme", [Ticket("my card", id=f"aim-{i}")])
            answers.setdefault(answer.decision.model_version, answer)
            i += 1
        for _ in range(35):
            await claim_challenger_wrong(service, "acme", list(answers.values()))

    h.run(scenario)
    challenger, champion = h.monitor.stats(Role.CHALLENGER), h.monitor.stats(Role.CHAMPION)
    assert (challenger.feedback, challenger.feedback_correct) == (1, 0)
    assert (champion.feedback, champion.feedback_correct) == (1, 1)
    assert feedback_breach(h.monitor, RolloutRules(feedback_min_tenants=1)) == []
    assert len(h.store.feedback("acme")) == 2  # the store kept one verdict per decision too


def test_a_changed_verdict_replaces_the_first_and_never_adds(h: Harness) -> None:
    async def scenario(service: TriageService) -> None:
        [answer] = await ask(service, "acme", 1)
        for verdict in ("billing", "login", "card"):
            await service.feedback("acme", answer.decision.request_id, verdict)

    h.run(scenario)
    stats = h.monitor.stats(Role.CHAMPION)
    assert (stats.feedback, stats.feedback_correct) == (1, 1)  # the latest verdict, once
    assert stats.feedback_by_tenant == (TenantCounts("acme", 1, 1),)


def test_repeated_verdicts_in_shadow_count_once_in_the_paired_totals(h: Harness) -> None:
    """``/v1/models``' shadow feedback (judged, accuracies) counts each decision once as well."""
    h.stage("shadow")

    async def scenario(service: TriageService) -> None:
        answers = await ask(service, "acme", 3)
        await until(lambda: h.monitor.agreement.compared == 3)
        for _ in range(20):
            for answer in answers:
                await service.feedback("acme", answer.decision.request_id, "billing")
        await service.feedback("acme", answers[0].decision.request_id, "card")

    h.run(scenario)
    feedback = h.monitor.agreement.to_dict()["feedback"]
    assert feedback == {
        "judged": 3,
        "tenants": 1,
        "champion_accuracy": pytest.approx(1 / 3),
        "challenger_accuracy": pytest.approx(1 / 3),
    }


# ------------------------------------------------------------------------------ no tenant decides alone


def test_one_tenant_with_many_decisions_cannot_roll_back_alone(h: Harness) -> None:
    """Distinct decisions do not help either: one tenant's verdicts never decide the rule on their own,
    while the same claim from a second tenant, independently, does."""
    h.stage("canary", 50)

    async def attack(service: TriageService) -> None:
        await claim_challenger_wrong(service, "acme", await ask(service, "acme", 150))
        honest = await ask(service, "globex", 10)
        for answer in honest:  # both models right on these
            await service.feedback("globex", answer.decision.request_id, "card")
        assert feedback_breach(h.monitor) == [], "acme alone decided the rule"
        # a second tenant seeing the challenger fail on its own tickets: now the drop stands without either
        await claim_challenger_wrong(service, "initech", await ask(service, "initech", 150))
        assert feedback_breach(h.monitor) == ["feedback_accuracy"]

    h.run(attack)


def by_tenant(*rows: tuple[str, int, int]) -> WindowStats:
    verdicts = tuple(TenantCounts(*row) for row in rows)
    return WindowStats(
        feedback=sum(v.n for v in verdicts),
        feedback_correct=sum(v.hits for v in verdicts),
        feedback_by_tenant=verdicts,
    )


def test_a_tenant_flooding_right_verdicts_cannot_hide_a_real_drop() -> None:
    """The cap works both ways: 1,000 'the challenger was right' verdicts from one tenant count as 100."""
    champion = by_tenant(("acme", 50, 49), ("globex", 50, 49))
    challenger = by_tenant(("acme", 50, 10), ("globex", 50, 10), ("mallory", 1000, 1000))
    breach = feedback_drop(DEFAULT_RULES, challenger, champion)
    assert breach is not None
    assert (
        "verdicts of 3 tenant(s), at most 100 each per side; holds without any single tenant" in breach.detail
    )
    uncapped = RolloutRules(feedback_tenant_cap=10_000)
    assert feedback_drop(uncapped, challenger, champion) is None  # what the cap prevents


def test_the_tenant_rules_are_read_from_the_policy_and_checked() -> None:
    text = "version: 1\nrollout:\n  feedback_min_tenants: 3\n  feedback_tenant_cap: 40\n"
    rules = parse_rollout_rules(text, source="p.yaml")
    assert (rules.feedback_min_tenants, rules.feedback_tenant_cap) == (3, 40)
    with pytest.raises(PolicyError, match=r"p\.yaml:3"):
        parse_rollout_rules("version: 1\nrollout:\n  feedback_min_tenants: 0\n", source="p.yaml")
    only_two = by_tenant(("acme", 60, 0), ("globex", 60, 0))
    champion = by_tenant(("acme", 60, 60), ("globex", 60, 60))
    assert feedback_drop(rules, only_two, champion) is None  # 3 tenants needed on each side


def pair(i: int, tenant: str, *, challenger_right: bool) -> ShadowPair:
    return ShadowPair(
        tenant=tenant,
        request_id=f"r{i}",
        champion_version="1",
        champion_intent="card",
        champion_confidence=0.9,
        champion_route=Route.AUTO,
        challenger_version="2",
        challenger_intent="card" if challenger_right else "billing",
        challenger_confidence=0.9,
        challenger_route=Route.AUTO,
        correct_intent="card",
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def test_the_report_shows_who_gave_the_verdicts_and_the_test_without_the_loudest() -> None:
    pairs = [pair(i, "mallory", challenger_right=False) for i in range(40)]
    pairs += [pair(100 + i, "acme", challenger_right=True) for i in range(10)]
    paired = build_report(pairs, model_name="triage", challenger_version="2").feedback
    assert paired is not None
    assert paired.test.p_value < 1e-6  # all verdicts together: the challenger looks much worse
    assert [(t.tenant, t.n, t.challenger_correct) for t in paired.by_tenant] == [
        ("mallory", 40, 0),
        ("acme", 10, 10),
    ]
    assert paired.largest_share == pytest.approx(0.8)
    assert paired.without_one is not None
    assert paired.without_one.tenant == "mallory"
    assert paired.without_one.test.p_value == pytest.approx(1.0)  # without mallory, nothing is left of it
    text = "\n".join(headline_lines(build_report(pairs, model_name="triage", challenger_version="2")))
    assert "verdicts by   2 tenants, the largest gave 80%; without mallory (10 left) McNemar p=1" in text
    assert "Who gave the verdicts" in render_html(build_report(pairs, model_name="t", challenger_version="2"))


def compare(monitor: RolloutMonitor, tenant: str | None, n: int, *, agreed: bool) -> None:
    for _ in range(n):
        monitor.observe_comparison(
            champion_intent="card",
            challenger_intent="card" if agreed else "billing",
            confidence_shift=0.0,
            champion_auto=True,
            challenger_auto=True,
            tenant=tenant,
        )


def test_one_tenants_traffic_cannot_decide_the_disagreement_rule() -> None:
    """Messages no intent fits, on which any two models differ, from one tenant: no shadow rollback; the
    same rate across two tenants' traffic, yes."""
    monitor = RolloutMonitor(window_s=60.0)
    compare(monitor, "mallory", 60, agreed=False)
    compare(monitor, "acme", 20, agreed=True)
    assert breaches(DEFAULT_RULES, monitor.stats(Role.CHALLENGER), WindowStats()) == []
    compare(monitor, "globex", 60, agreed=False)
    [breach] = breaches(DEFAULT_RULES, monitor.stats(Role.CHALLENGER), WindowStats())
    assert breach.rule == "disagreement"
    assert breach.detail.endswith("from 3 tenants, holds without any single tenant")
    single = RolloutRules(disagreement_min_tenants=1)  # a single-tenant deployment may opt out
    lone = RolloutMonitor(window_s=60.0)
    compare(lone, "mallory", 60, agreed=False)
    assert [b.rule for b in breaches(single, lone.stats(Role.CHALLENGER), WindowStats())] == ["disagreement"]


def test_the_shadow_scorer_names_the_tenant_of_each_comparison(h: Harness) -> None:
    """Needs ``ShadowScorer._score`` to pass ``tenant=tenant`` to ``observe_comparison``: without it the
    comparisons are unattributed and one tenant's traffic still decides the disagreement rule."""
    h.stage("shadow")
    challenger = h.model(Role.CHALLENGER)
    rows = challenger._rows
    challenger._rows = lambda texts: np.roll(rows(texts), 1, axis=1)  # it answers another intent

    async def scenario(service: TriageService) -> None:
        await service.triage("mallory", [Ticket("my card", id=f"m-{i}") for i in range(40)])
        await until(lambda: h.monitor.agreement.compared == 40)

    h.run(scenario)
    stats = h.monitor.stats(Role.CHALLENGER)
    assert stats.compared_by_tenant == (TenantCounts("mallory", 40, 40),)
    assert breaches(DEFAULT_RULES, stats, WindowStats()) == []


# ----------------------------------------------------------------------------------------- canary salt


def test_ticket_ids_aimed_with_the_public_hash_no_longer_choose_the_side(h: Harness) -> None:
    """A tenant can compute the unsalted bucket of any id; with the rollout's salt it learns nothing."""
    h.stage("canary", 10)
    state = h.manager.state
    aimed = [f"t-{i}" for i in range(20_000) if bucket("acme", f"t-{i}") < BUCKETS // 10][:1000]
    landed = sum(to_challenger(state, "acme", key) for key in aimed) / len(aimed)
    assert abs(landed - 0.10) < 4 * (0.1 * 0.9 / len(aimed)) ** 0.5, landed


def test_the_salt_is_secret_sticky_through_a_ramp_and_new_per_challenger(h: Harness) -> None:
    h.stage("canary", 10)
    first = read_state(h.registry, MODEL_NAME)
    assert len(first.salt) == 32
    assert first.salt not in repr(first)
    ramped = ramp(h.registry, h.audit, MODEL_NAME, percent=30, actor="t", reason="t")
    assert ramped.salt == first.salt  # a ticket on the challenger at 10% stays there at 30%
    keys = [f"k{i}" for i in range(5000)]
    assert {k for k in keys if to_challenger(first, "acme", k)} < {
        k for k in keys if to_challenger(ramped, "acme", k)
    }
    h.manager.refresh()
    assert first.salt not in str(h.service.serving())  # /v1/models never shows it
    # a challenger leaving takes its salt along; the next one draws its own
    register(h.registry, scripted_model())
    promote(
        h.registry, h.audit, ModelRef(MODEL_NAME, version="4"), to="canary", percent=10, actor="t", reason="t"
    )
    assert read_state(h.registry, MODEL_NAME).salt not in ("", first.salt)


# ------------------------------------------------------------------------------ through a real server

ACME, GLOBEX = "acme-key-0123456789abcdef", "globex-key-0123456789abcdef"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """Scripted champion (v1) and challenger (v2) in a 50% canary under the packaged rollout rules."""
    registry, audit = InMemoryRegistry(), InMemoryAuditLog()
    champion = register(registry, scripted_model(confidence=0.9))
    challenger = register(registry, scripted_model(confidence=0.8))
    promote(
        registry,
        audit,
        ModelRef(MODEL_NAME, version=champion),
        to="champion",
        percent=None,
        actor="t",
        reason="t",
    )
    promote(
        registry,
        audit,
        ModelRef(MODEL_NAME, version=challenger),
        to="canary",
        percent=50,
        actor="t",
        reason="t",
    )
    settings = Settings(
        home=tmp_path,
        model_name=MODEL_NAME,
        api_keys=[f"acme:{ACME}", f"globex:{GLOBEX}"],
        rate_limit_per_s=0,
        reload_interval_s=0.2,
        guard_interval_s=0.1,
    )
    app = create_app(settings, Overrides(registry=registry, store=InMemoryStore(), audit=audit))
    with serve(app) as live:
        yield live


def test_the_reported_attack_on_a_real_server_leaves_the_canary_in_place(server: LiveServer) -> None:
    service: TriageService = server.app.state.parts.service
    assert service.models.challenger is not None
    with server.client(ACME) as client:
        answers: dict[str, dict[str, Any]] = {}
        for i in range(200):
            body = client.post("/v1/triage", json={"text": "my card", "id": f"aim-{i}"}).json()
            answers.setdefault(body["model_version"], body)
            if len(answers) == 2:
                break
        assert set(answers) == {CHAMPION, CHALLENGER}
        posts = []
        for _ in range(35):
            for version, body in answers.items():
                verdict = "billing" if version == CHALLENGER else body["intent"]
                response = client.post(
                    "/v1/feedback", json={"request_id": body["request_id"], "correct_intent": verdict}
                )
                posts.append(response.status_code)
        assert posts == [200] * 70
        # any intent at all is no longer taken
        refused = client.post(
            "/v1/feedback", json={"request_id": body["request_id"], "correct_intent": "anything goes"}
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "unknown_intent"
    monitor = service.monitor
    assert (monitor.stats(Role.CHALLENGER).feedback, monitor.stats(Role.CHAMPION).feedback) == (1, 1)
    rules = server.app.state.parts.rules
    assert breaches(rules, monitor.stats(Role.CHALLENGER), monitor.stats(Role.CHAMPION)) == []
    time.sleep(1.0)  # ten guard checks: before the fix the canary was gone well within this
    with server.client(GLOBEX) as client:
        models = client.get("/v1/models").json()
    assert models["challenger"] is not None
    assert models["rollout"]["stage"] == "canary"
    assert "salt" not in str(models)
