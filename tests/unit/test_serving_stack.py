"""The service assembled by ``ServingStack`` without HTTP: every role's ``deskpilot_model_info`` series names
the model serving that role (the challenger's once named the fallback), and the automatic rollback is
audited through the recorder."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskpilot.config import Settings
from deskpilot.domain import ModelRef, Role
from deskpilot.errors import StoreUnavailableError
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.rollout.actions import promote, read_state
from deskpilot.store.audit import InMemoryAuditLog
from deskpilot.store.memory import InMemoryStore
from deskpilot.workflows.audit import PENDING_FILE, PendingEntries
from deskpilot.workflows.serving import Overrides, ServingStack
from tests.unit.service_fakes import MODEL_NAME, installed, register, scripted_model


@pytest.fixture(autouse=True)
def _scripted_family(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from installed(monkeypatch)


def model_info(rendered: str) -> dict[str, str]:
    """role -> version of the ``deskpilot_model_info`` series at 1."""
    found = {}
    for line in rendered.splitlines():
        if line.startswith("deskpilot_model_info{") and line.endswith(" 1.0"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            found[labels["role"]] = labels["version"]
    return found


def test_model_info_names_the_model_of_each_role(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    champion = register(registry, scripted_model())
    fallback = register(registry, scripted_model())
    challenger = register(registry, scripted_model())
    registry.set_alias(MODEL_NAME, "champion", champion)
    registry.set_alias(MODEL_NAME, "fallback", fallback)
    audit = InMemoryAuditLog()
    ref = ModelRef(MODEL_NAME, version=challenger)
    promote(registry, audit, ref, to="canary", percent=10, actor="t", reason="try it")
    settings = Settings(home=tmp_path, model_name=MODEL_NAME, reload_interval_s=0, guard_interval_s=60)
    stack = ServingStack(settings, Overrides(registry=registry, store=InMemoryStore(), audit=audit))

    async def scenario() -> dict[str, str]:
        await stack.start()
        try:
            return model_info(stack.metrics.render().decode())
        finally:
            await stack.stop()

    assert asyncio.run(scenario()) == {
        Role.CHAMPION: champion,
        Role.CHALLENGER: challenger,
        Role.FALLBACK: fallback,
    }


def test_an_automatic_rollback_is_audited_by_the_service(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    champion = register(registry, scripted_model())
    challenger = register(registry, scripted_model())
    registry.set_alias(MODEL_NAME, "champion", champion)
    audit = InMemoryAuditLog()
    promote(
        registry,
        audit,
        ModelRef(MODEL_NAME, version=challenger),
        to="shadow",
        percent=None,
        actor="t",
        reason="r",
    )
    settings = Settings(home=tmp_path, model_name=MODEL_NAME, reload_interval_s=0, guard_interval_s=60)
    stack = ServingStack(settings, Overrides(registry=registry, store=InMemoryStore(), audit=audit))

    async def scenario() -> None:
        await stack.start()
        try:
            await asyncio.to_thread(stack.automatic_rollback, registry, "automatic rollback: test")
        finally:
            await stack.stop()

    asyncio.run(scenario())
    last = audit.entries()[-1]
    assert (last.actor, last.action, last.reason) == (
        "deskpilot-service",
        "auto_rollback",
        "automatic rollback: test",
    )
    assert audit.verify().ok


class UnreachableLog(InMemoryAuditLog):
    """An audit store that cannot be reached."""

    def head(self) -> Any:
        raise StoreUnavailableError("the store is down")

    def append(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the store is down")


def test_with_the_store_down_a_rollback_goes_ahead_queued_and_a_ramp_waits(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    champion = register(registry, scripted_model())
    challenger = register(registry, scripted_model())
    registry.set_alias(MODEL_NAME, "champion", champion)
    ref = ModelRef(MODEL_NAME, version=challenger)
    promote(registry, InMemoryAuditLog(), ref, to="canary", percent=5, actor="t", reason="r")
    settings = Settings(home=tmp_path, model_name=MODEL_NAME, reload_interval_s=0, guard_interval_s=60)
    stack = ServingStack(
        settings, Overrides(registry=registry, store=InMemoryStore(), audit=UnreachableLog())
    )

    async def scenario() -> tuple[float, str | None]:
        await stack.start()
        try:
            with pytest.raises(StoreUnavailableError):
                await asyncio.to_thread(stack.automatic_ramp, registry, 25.0)
            percent = read_state(registry, MODEL_NAME).percent
            after = await asyncio.to_thread(stack.automatic_rollback, registry, "automatic rollback: test")
            return percent, after.challenger
        finally:
            await stack.stop()

    assert asyncio.run(scenario()) == (5.0, None), "no unaudited ramp; the rollback happened all the same"
    assert PendingEntries(tmp_path / PENDING_FILE).count() == 1
