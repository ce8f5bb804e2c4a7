"""The audit log for the operator console: pages of entries, newest first, and the chain's verification.

Both read through the same workflow functions as ``deskpilot audit log`` and ``deskpilot audit verify``
(:mod:`deskpilot.workflows.audit`): the log in the store, checked against this home's audit keys and head
ledger. The audit page verifies the whole chain each time it is shown (a hash and a MAC per entry: cheap
for an audit log's size, and a stale "intact" would be worse than a slow page); no other page does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from deskpilot.config import Settings
from deskpilot.errors import StoreError
from deskpilot.store.audit import AuditEntry
from deskpilot.workflows.audit import ChainCheck, open_audit_for_reading, queued_entries, verify_chain

PER_PAGE = 50


@dataclass(frozen=True)
class AuditPage:
    """One page of entries, newest first; ``message`` says why there are none (no store yet)."""

    entries: list[AuditEntry]
    page: int
    pages: int
    total: int
    per_page: int
    queued: int
    message: str = ""

    @property
    def newer(self) -> int | None:
        return self.page - 1 if self.page > 1 else None

    @property
    def older(self) -> int | None:
        return self.page + 1 if self.page < self.pages else None


def audit_page(settings: Settings, page: int = 1, per_page: int = PER_PAGE) -> AuditPage:
    """Entries of page ``page`` (1 is the newest), newest first; a page past the end is the last one."""
    queued = queued_entries(settings)
    try:
        log = open_audit_for_reading(settings)
    except StoreError as error:
        return AuditPage([], 1, 1, 0, per_page, queued, f"No audit log yet: {error.message}")
    try:
        head = log.head()
        total = 0 if head is None else head.seq
        pages = max(1, math.ceil(total / per_page))
        page = min(max(1, page), pages)
        newest = total - (page - 1) * per_page
        since = max(0, newest - per_page)
        entries = log.entries(since_seq=since, limit=newest - since) if total else []
    finally:
        log.close()
    return AuditPage(list(reversed(entries)), page, pages, total, per_page, queued)


@dataclass(frozen=True)
class Verification:
    """``deskpilot audit verify``'s verdict in words: a headline, details, warnings."""

    ok: bool
    headline: str
    details: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def verify(settings: Settings) -> Verification:
    """Check the chain as ``deskpilot audit verify`` does (no anchor): hashes, MACs, recorded heads."""
    try:
        check = verify_chain(settings)
    except StoreError as error:
        return Verification(False, f"Cannot verify: {error.message}")
    return describe(check)


def describe(check: ChainCheck) -> Verification:
    result = check.result
    warnings = []
    if check.queued:
        warnings.append(
            f"{check.queued} entr{'y waits' if check.queued == 1 else 'ies wait'} in this home's queue for "
            "the store; the next audited action writes them"
        )
    if not result.ok:
        return Verification(
            False,
            f"Chain broken at entry {result.first_broken_seq}: {result.problem}",
            [result.detail, f"{result.checked} entries intact before it"],
            warnings,
        )
    if result.head is None:
        return Verification(True, "Chain intact: the log is empty", [], warnings)
    keyed = (
        "all keyed"
        if not result.unkeyed
        else f"{result.keyed} keyed, {result.unkeyed} unkeyed (written before audit keys)"
    )
    details = [
        f"{result.checked} entries, {keyed}",
        f"{result.anchors} recorded head{'s' * (result.anchors != 1)} matched",
        f"Anchor for later checks (keep it outside the database): {result.head.seq}:{result.head.hash}",
        f"Keys from {check.keys}",
    ]
    if not result.anchors:
        warnings.append(
            f"No head of this store is recorded in {check.ledger}: deleted newest entries or a rewritten "
            "chain cannot be detected from this home"
        )
    if result.unkeyed and result.unkeyed == result.checked:
        warnings.append("No entry is keyed: anyone who can write the table could have written them")
    return Verification(True, f"Chain intact: {result.checked} entries", details, warnings)
