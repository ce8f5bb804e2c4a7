"""The audit log for the console: pages newest first, and ``audit verify``'s verdict in words."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from deskpilot.config import Settings
from deskpilot.console import operator_audit
from deskpilot.store.audit import AuditAction, AuditEntry, VerifyResult
from deskpilot.workflows.audit import ChainCheck, open_audit


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


def _write(settings: Settings, count: int) -> None:
    recorder = open_audit(settings, actor="console:acme/1a2b3c4d")
    for i in range(count):
        recorder.record(AuditAction.PROMOTE, f"models:/triage/{i + 1}", f"reason {i + 1}", {"to": "canary"})


def test_pages_run_newest_first_and_a_page_past_the_end_is_the_last(settings: Settings) -> None:
    _write(settings, 7)
    first = operator_audit.audit_page(settings, 1, per_page=3)
    assert [e.seq for e in first.entries] == [7, 6, 5]
    assert (first.page, first.pages, first.total, first.newer, first.older) == (1, 3, 7, None, 2)
    middle = operator_audit.audit_page(settings, 2, per_page=3)
    assert [e.seq for e in middle.entries] == [4, 3, 2]
    assert (middle.newer, middle.older) == (1, 3)
    last = operator_audit.audit_page(settings, 3, per_page=3)
    assert [e.seq for e in last.entries] == [1]
    assert operator_audit.audit_page(settings, 99, per_page=3).page == 3
    assert operator_audit.audit_page(settings, -5, per_page=3).page == 1
    assert first.entries[0].actor == "console:acme/1a2b3c4d"


def test_no_store_yet_is_a_message_not_an_error(settings: Settings) -> None:
    page = operator_audit.audit_page(settings)
    assert page.entries == []
    assert page.message.startswith("No audit log yet")
    verdict = operator_audit.verify(settings)
    assert not verdict.ok
    assert verdict.headline.startswith("Cannot verify")


def test_an_intact_chain_is_verified_with_its_anchor(settings: Settings) -> None:
    _write(settings, 3)
    verdict = operator_audit.verify(settings)
    assert verdict.ok
    assert verdict.headline == "Chain intact: 3 entries"
    assert any(line.startswith("Anchor for later checks") for line in verdict.details)
    assert "3 entries, all keyed" in verdict.details
    assert verdict.warnings == []


def test_a_broken_chain_names_the_first_broken_entry(tmp_path: Path) -> None:
    broken = VerifyResult(
        ok=False, checked=4, first_broken_seq=5, problem="edited entry", detail="hash differs"
    )
    verdict = operator_audit.describe(ChainCheck("sqlite://", broken, 2, tmp_path / "ledger", "key file"))
    assert not verdict.ok
    assert verdict.headline == "Chain broken at entry 5: edited entry"
    assert verdict.details == ["hash differs", "4 entries intact before it"]
    assert verdict.warnings[0].startswith("2 entries wait")


def test_an_unanchored_unkeyed_chain_is_intact_with_warnings(tmp_path: Path) -> None:
    empty = operator_audit.describe(
        ChainCheck("sqlite://", VerifyResult(True, 0, None, ""), 0, tmp_path, "none")
    )
    assert (empty.ok, empty.headline) == (True, "Chain intact: the log is empty")
    head = AuditEntry(
        seq=2,
        at=datetime(2026, 3, 1, tzinfo=UTC),
        actor="ops",
        action="promote",
        target="models:/triage/2",
        reason="r",
        payload={},
        prev_hash="0" * 64,
        hash="f" * 64,
    )
    result = VerifyResult(True, 2, None, "", head=head, unkeyed=2, anchors=0)
    verdict = operator_audit.describe(ChainCheck("sqlite://", result, 0, tmp_path / "ledger", "none"))
    assert verdict.ok
    assert "2 entries, 0 keyed, 2 unkeyed (written before audit keys)" in verdict.details
    assert f"Anchor for later checks (keep it outside the database): 2:{'f' * 64}" in verdict.details
    assert len(verdict.warnings) == 2
