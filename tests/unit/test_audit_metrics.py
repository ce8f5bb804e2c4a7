"""The service counts audit entries it could not write and gauges the ones queued for the store
(``deskpilot_audit_write_failures_total{action}``, ``deskpilot_audit_pending_entries``): the alerts
DeskPilotAuditWriteFailures and DeskPilotAuditEntriesPending read them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deskpilot.config import Settings
from deskpilot.domain import ModelRef
from deskpilot.errors import AuditWriteError, StoreError, StoreUnavailableError
from deskpilot.registry.memory import InMemoryRegistry
from deskpilot.rollout.actions import promote, read_state
from deskpilot.store.audit import AuditAction, InMemoryAuditLog
from deskpilot.store.memory import InMemoryStore
from deskpilot.workflows.audit import PENDING_FILE, AuditRecorder, PendingEntries
from deskpilot.workflows.serving import Overrides, ServingStack
from tests.unit.service_fakes import MODEL_NAME, installed, register, scripted_model


@pytest.fixture(autouse=True)
def _scripted_family(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from installed(monkeypatch)


class RefusingLog(InMemoryAuditLog):
    """A store that answers but refuses appends (a read-only role, a full disk)."""

    def append(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreError("permission denied for table audit_log")


class UnreachableLog(InMemoryAuditLog):
    """An audit store that cannot be reached."""

    def head(self) -> Any:
        raise StoreUnavailableError("the store is down")

    def append(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the store is down")


def sample(stack: ServingStack, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``, or None when there is none."""
    for family in text_string_to_metric_families(stack.metrics.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def test_the_recorder_reports_each_entry_it_loses_but_not_those_it_queues(tmp_path: Path) -> None:
    lost: list[str] = []
    pending = PendingEntries(tmp_path / PENDING_FILE)
    down = AuditRecorder(UnreachableLog(), pending=pending, actor="t", on_unwritten=lost.append)
    assert down.record(AuditAction.AUTO_ROLLBACK, "models:/m/2", "r", {}).queued
    with pytest.raises(AuditWriteError):
        down.record(AuditAction.RAMP, "models:/m/2", "r", {})  # not deferrable: lost
    refusing = AuditRecorder(RefusingLog(), pending=pending, actor="t", on_unwritten=lost.append)
    with pytest.raises(AuditWriteError):
        refusing.record(AuditAction.STORE_PURGE, "store", "r", {})
    assert lost == ["ramp", "store_purge"]
    assert pending.count() == pending.peek() == 1


def canary_stack(tmp_path: Path, audit: InMemoryAuditLog) -> tuple[ServingStack, InMemoryRegistry]:
    registry = InMemoryRegistry()
    champion = register(registry, scripted_model())
    challenger = register(registry, scripted_model())
    registry.set_alias(MODEL_NAME, "champion", champion)
    ref = ModelRef(MODEL_NAME, version=challenger)
    promote(registry, InMemoryAuditLog(), ref, to="canary", percent=5, actor="t", reason="r")
    settings = Settings(home=tmp_path, model_name=MODEL_NAME, reload_interval_s=0, guard_interval_s=60)
    return ServingStack(settings, Overrides(registry=registry, store=InMemoryStore(), audit=audit)), registry


def test_an_unaudited_automatic_rollback_is_counted(tmp_path: Path) -> None:
    stack, registry = canary_stack(tmp_path, RefusingLog())
    failures = "deskpilot_audit_write_failures_total"

    async def scenario() -> tuple[float | None, float | None]:
        await stack.start()
        try:
            before = sample(stack, failures, action="auto_rollback")
            with pytest.raises(AuditWriteError, match="done all the same"):
                await asyncio.to_thread(stack.automatic_rollback, registry, "automatic rollback: test")
            return before, sample(stack, failures, action="auto_rollback")
        finally:
            await stack.stop()

    assert asyncio.run(scenario()) == (0.0, 1.0)
    assert read_state(registry, MODEL_NAME).challenger is None, "the rollback itself happened"


async def gauge_reads(stack: ServingStack, value: float) -> None:
    """Wait (at most 30 s) for the pending-entries gauge to read ``value``."""
    deadline = time.monotonic() + 30
    while (seen := sample(stack, "deskpilot_audit_pending_entries")) != value:
        if time.monotonic() > deadline:
            pytest.fail(f"deskpilot_audit_pending_entries reads {seen}, not {value}")
        await asyncio.sleep(0.01)


def test_the_gauge_follows_the_pending_file_whoever_queues_or_drains_it(tmp_path: Path) -> None:
    stack, registry = canary_stack(tmp_path, UnreachableLog())
    stack.pending_gauge_interval_s = 0.01
    pending = PendingEntries(tmp_path / PENDING_FILE)

    async def scenario() -> None:
        await stack.start()
        try:
            await gauge_reads(stack, 0.0)
            await asyncio.to_thread(stack.automatic_rollback, registry, "automatic rollback: test")
            await gauge_reads(stack, 1.0)
            pending.add("ops", "key_revoke", "acme/1", "r", {})  # another process of this home queues one
            await gauge_reads(stack, 2.0)
            pending.drain(InMemoryAuditLog())  # and a command drains them once the store is back
            await gauge_reads(stack, 0.0)
        finally:
            await stack.stop()

    asyncio.run(scenario())
