"""Verifying the audit chain: anchors, the seal's protocol, and the walk that names the first broken entry.

See :mod:`deskpilot.store.audit` for what is detectable and how.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from deskpilot.store.audit_entry import GENESIS_HASH, AuditEntry

MIN_ANCHOR_PREFIX = 12

PROBLEM_EDITED = "hash mismatch (row edited)"
PROBLEM_CHAIN = "prev_hash does not match previous entry (chain broken / row deleted or reordered)"
PROBLEM_GAP = "sequence gap (row deleted)"
PROBLEM_ORDER = "sequence out of order (rows reordered or duplicated)"
PROBLEM_TRUNCATED = "entries missing after the anchor or a recorded head (last rows deleted)"
PROBLEM_ANCHOR = "entry does not match the anchor (chain rewritten)"
PROBLEM_MAC = "MAC does not match (entry forged or rewritten)"
PROBLEM_KEY = "entry signed with a key this verifier does not hold"
PROBLEM_UNKEYED = "unkeyed entry after keyed ones (entry forged)"


@dataclass(frozen=True, slots=True)
class AuditAnchor:
    """A head recorded outside the database: the log must still hold entry ``seq`` with this hash (a hex
    prefix of at least 12 digits, as ``deskpilot audit verify`` prints it, is accepted)."""

    seq: int
    hash: str
    key_id: str | None = None
    """When set (a head recorded at append time), the entry must still be signed with this key: a chain
    rewritten with its MACs stripped (as 'unkeyed' entries) does not match."""

    def __post_init__(self) -> None:
        if self.seq < 1 or not re.fullmatch(rf"[0-9a-f]{{{MIN_ANCHOR_PREFIX},64}}", self.hash):
            raise ValueError(f"an anchor is SEQ:HASH with seq >= 1 and {MIN_ANCHOR_PREFIX}-64 hex digits")

    @classmethod
    def parse(cls, text: str) -> AuditAnchor:
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdigit():
            raise ValueError(f"anchor {text!r}: expected SEQ:HASH")
        return cls(int(seq), digest.lower())


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    """A stored row that no longer parses as an entry (a tampered type or malformed JSON); ``seq`` is
    ``None`` when even that is not an integer any more."""

    seq: int | None
    why: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    """Entries found intact before the first broken one (all of them when ``ok``)."""
    first_broken_seq: int | None
    problem: str
    """Empty when ``ok``; otherwise one of the ``PROBLEM_*`` strings."""
    detail: str = ""
    head: AuditEntry | None = None
    """The last intact entry."""
    unkeyed: int = 0
    """Intact entries without a MAC (written before audit keys existed); always the chain's first ones."""
    macs_checked: bool = False
    """Whether keyed entries had their MAC checked (a seal was given)."""
    anchors: int = 0
    """Recorded heads (and the anchor passed) that were checked against the chain."""

    @property
    def keyed(self) -> int:
        return self.checked - self.unkeyed

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_broken_seq": self.first_broken_seq,
            "problem": self.problem or None,
            "detail": self.detail or None,
            "head": None if self.head is None else {"seq": self.head.seq, "hash": self.head.hash},
            "keyed": self.keyed,
            "unkeyed": self.unkeyed,
            "macs_checked": self.macs_checked,
            "anchors_checked": self.anchors,
        }


class AuditSeal(Protocol):
    """What a log needs beyond the hashes to make its chain hold against someone who can write the table:
    keys that sign new entries and check stored ones, and heads recorded outside the database.
    :class:`deskpilot.store.audit_seal.ChainSeal` is the implementation."""

    def prepare(self) -> None:
        """Load (or create) the signing key, so that an action fails before it changes anything."""

    def seal(self, entry: AuditEntry) -> AuditEntry:
        """The entry with its ``key_id`` and ``mac`` (raises when no key can sign)."""

    def check(self, entry: AuditEntry) -> tuple[str, str] | None:
        """``None`` when a keyed entry's MAC is right, else (``PROBLEM_MAC`` or ``PROBLEM_KEY``, detail)."""

    def witness(self, entry: AuditEntry, location: str) -> None:
        """Record a committed entry as the head of the log at ``location``."""

    def anchors(self, location: str) -> list[AuditAnchor]:
        """Heads recorded for the log at ``location``."""


def check_chain(
    rows: Iterable[AuditEntry | UnreadableRow],
    anchor: AuditAnchor | None = None,
    *,
    seal: AuditSeal | None = None,
    recorded: Iterable[AuditAnchor] = (),
) -> VerifyResult:
    """Walk entries in the order stored (by ``seq``) and report the first that breaks the chain.

    ``anchor`` (a head passed by hand) and ``recorded`` (heads from the ledger) must each still be in the
    chain; with ``seal`` every keyed entry's MAC is checked. Whether or not MACs are checked, unkeyed
    entries may only come before the first keyed one."""
    anchors: dict[int, list[AuditAnchor]] = {}
    for known in [*recorded, *([anchor] if anchor is not None else [])]:
        anchors.setdefault(known.seq, []).append(known)
    previous: AuditEntry | None = None
    checked = unkeyed = 0

    def result(problem: tuple[int, str, str] | None) -> VerifyResult:
        seq, what, detail = (None, "", "") if problem is None else problem
        return VerifyResult(
            ok=problem is None,
            checked=checked,
            first_broken_seq=seq,
            problem=what,
            detail=detail,
            head=previous,
            unkeyed=unkeyed,
            macs_checked=seal is not None,
            anchors=sum(len(found) for found in anchors.values()),
        )

    for row in rows:
        problem = _problem(row, previous, anchors.get(_seq_of(row, previous), []), seal)
        if problem is not None:
            return result(problem)
        assert isinstance(row, AuditEntry)  # an unreadable row is always a problem
        previous, checked = row, checked + 1
        unkeyed += not row.keyed
    last_seq = 0 if previous is None else previous.seq
    beyond = max(anchors, default=0)
    if beyond > last_seq:
        source = "an anchor" if anchor is not None and anchor.seq == beyond else "a recorded head"
        detail = f"the log ends at {last_seq}, {source} names entry {beyond}"
        return result((last_seq + 1, PROBLEM_TRUNCATED, detail))
    return result(None)


def _seq_of(row: AuditEntry | UnreadableRow, previous: AuditEntry | None) -> int:
    if row.seq is not None:
        return row.seq
    return 1 if previous is None else previous.seq + 1


def _problem(
    row: AuditEntry | UnreadableRow,
    previous: AuditEntry | None,
    anchors: list[AuditAnchor],
    seal: AuditSeal | None,
) -> tuple[int, str, str] | None:
    """(first broken seq, problem, detail) when ``row`` cannot follow ``previous``."""
    if isinstance(row, UnreadableRow):
        seq = _seq_of(row, previous)
        return seq, PROBLEM_EDITED, f"entry {seq} is unreadable: {row.why}"
    return _link_problem(row, previous) or _trust_problem(row, previous, anchors, seal)


def _link_problem(row: AuditEntry, previous: AuditEntry | None) -> tuple[int, str, str] | None:
    """What the hashes alone show: a gap, a reordering, an edited entry, a broken link."""
    expected_seq = 1 if previous is None else previous.seq + 1
    if row.seq > expected_seq:
        missing = f"{expected_seq}" if row.seq == expected_seq + 1 else f"{expected_seq}..{row.seq - 1}"
        return expected_seq, PROBLEM_GAP, f"entry {missing} missing; the next stored is {row.seq}"
    if row.seq < expected_seq:
        return row.seq, PROBLEM_ORDER, f"entry {row.seq} found where {expected_seq} belongs"
    try:
        recomputed = row.computed_hash()
    except ValueError as error:
        recomputed = f"(none: {error})"
    expected_prev = GENESIS_HASH if previous is None else previous.hash
    if recomputed != row.hash:
        return row.seq, PROBLEM_EDITED, f"entry {row.seq} stores {row.hash[:12]}, content gives {recomputed}"
    if row.prev_hash != expected_prev:
        detail = f"entry {row.seq} links to {row.prev_hash[:12]}, the entry before it is {expected_prev[:12]}"
        return row.seq, PROBLEM_CHAIN, detail
    return None


def _trust_problem(
    row: AuditEntry, previous: AuditEntry | None, anchors: list[AuditAnchor], seal: AuditSeal | None
) -> tuple[int, str, str] | None:
    """What needs something kept outside the database: the MAC, the order of keyed entries, the anchors."""
    if not row.keyed and previous is not None and previous.keyed:
        return row.seq, PROBLEM_UNKEYED, f"entry {row.seq} has no MAC, entry {previous.seq} has one"
    if row.keyed and seal is not None and (bad := seal.check(row)) is not None:
        return row.seq, *bad
    for known in anchors:
        if not row.hash.startswith(known.hash):
            detail = f"entry {row.seq} is {row.hash[:12]}, the anchor says {known.hash}"
            return row.seq, PROBLEM_ANCHOR, detail
        if known.key_id is not None and row.key_id != known.key_id:
            detail = f"entry {row.seq} was signed with key {known.key_id} when written, now {row.key_id}"
            return row.seq, PROBLEM_ANCHOR, detail
    return None
