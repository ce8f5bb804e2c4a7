"""The audit chain's hashing and verification, on the in-memory log."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from deskpilot.store.audit import (
    GENESIS_HASH,
    PROBLEM_ANCHOR,
    PROBLEM_CHAIN,
    PROBLEM_EDITED,
    PROBLEM_GAP,
    PROBLEM_ORDER,
    PROBLEM_TRUNCATED,
    AuditAnchor,
    AuditEntry,
    InMemoryAuditLog,
    UnreadableRow,
    canonical_bytes,
    check_chain,
    default_actor,
    new_entry,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
FIRST_PAYLOAD = {"to": "champion", "percent": 100, "from": "canary", "note": "ünï"}
# Written out by hand and hashed with `printf '%s' '...' | sha256sum`, not with the code under test.
FIRST_CANONICAL = (
    '{"action":"promote","actor":"alice","at":"2026-03-01T12:00:00.123456Z",'
    '"payload":{"from":"canary","note":"ünï","percent":100,"to":"champion"},'
    f'"prev_hash":"{"0" * 64}","reason":"gate passed","seq":1,"target":"models:/deskpilot-triage/4"}}'
)
FIRST_HASH = "8c02725f31dc2260507486b326715717b941fec7226548d8ccc340d81afcda9f"
SECOND_HASH = "0e4a4e5b61b9c6980a02d33eab17419771aee57a4eca9afc22b912ecf4295a78"


def fixed_chain() -> list[AuditEntry]:
    first = new_entry(
        0,
        GENESIS_HASH,
        actor="alice",
        action="promote",
        target="models:/deskpilot-triage/4",
        reason="gate passed",
        payload=FIRST_PAYLOAD,
        at=T0,
    )
    second = new_entry(
        first.seq,
        first.hash,
        actor="bob",
        action="rollback",
        target="models:/deskpilot-triage/3",
        reason="p99 breach",
        payload=None,
        at=datetime(2026, 3, 1, 13, 5, tzinfo=timezone(timedelta(hours=1))),  # 12:05 UTC
    )
    return [first, second]


def filled(n: int = 5) -> InMemoryAuditLog:
    log = InMemoryAuditLog()
    for i in range(1, n + 1):
        log.append(f"user{i}", "promote", f"models:/m/{i}", f"reason {i}", {"version": i, "to": "canary"})
    return log


def test_the_canonical_hash_is_the_hand_computed_one() -> None:
    first, second = fixed_chain()
    assert GENESIS_HASH == "0" * 64
    content = canonical_bytes(
        seq=1,
        at=T0,
        actor="alice",
        action="promote",
        target="models:/deskpilot-triage/4",
        reason="gate passed",
        payload=FIRST_PAYLOAD,
        prev_hash=GENESIS_HASH,
    )
    assert content == FIRST_CANONICAL.encode("utf-8")
    assert hashlib.sha256(FIRST_CANONICAL.encode("utf-8")).hexdigest() == FIRST_HASH
    assert (first.seq, first.prev_hash, first.hash) == (1, GENESIS_HASH, FIRST_HASH)
    assert (second.seq, second.prev_hash, second.hash) == (2, FIRST_HASH, SECOND_HASH)
    assert second.at == datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    assert second.at.utcoffset() == timedelta(0)
    assert second.to_dict()["at"] == "2026-03-01T12:05:00.000000Z"
    assert check_chain([first, second]).ok


def test_the_hash_does_not_depend_on_payload_key_order_or_tuples() -> None:
    a = new_entry(
        0, GENESIS_HASH, actor="a", action="gate", target="t", reason="r", payload={"x": 1, "y": (1, 2)}
    )
    b = dataclasses.replace(a, payload={"y": [1, 2], "x": 1})
    assert a.payload == {"x": 1, "y": [1, 2]}  # normalized as the database would give it back
    assert a.hash == b.computed_hash()


def test_appends_build_a_gapless_chain() -> None:
    log = filled(5)
    entries = log.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
        assert after.at >= before.at
    assert all(e.hash == e.computed_hash() for e in entries)
    assert log.head() == entries[-1]
    assert [e.seq for e in log.entries(since_seq=2, limit=2)] == [3, 4]
    assert log.entries(since_seq=5) == []
    result = log.verify()
    assert (result.ok, result.checked, result.first_broken_seq, result.problem) == (True, 5, None, "")
    assert result.head == entries[-1]


def test_an_empty_log_verifies_and_has_no_head() -> None:
    log = InMemoryAuditLog()
    assert log.head() is None
    assert log.entries() == []
    result = log.verify()
    assert (result.ok, result.checked, result.head) == (True, 0, None)


def test_returned_entries_are_copies() -> None:
    log = filled(2)
    log.entries()[0].payload["version"] = 99
    log.head().payload["to"] = "champion"  # type: ignore[union-attr]
    assert log.verify().ok


@pytest.mark.parametrize(
    "field_change",
    [
        {"payload": {"version": 3, "to": "champion"}},
        {"reason": "nothing to see"},
        {"actor": "mallory"},
        {"at": datetime(2026, 1, 1, tzinfo=UTC)},
        {"action": "rollback"},
        {"target": "models:/m/9"},
        {"prev_hash": "f" * 64},
    ],
    ids=lambda change: next(iter(change)),
)
def test_an_edited_field_is_a_hash_mismatch_at_that_entry(field_change: dict[str, object]) -> None:
    log = filled(5)
    log.rows[2] = dataclasses.replace(log.rows[2], **field_change)  # type: ignore[arg-type]
    result = log.verify()
    assert (result.ok, result.first_broken_seq, result.problem, result.checked) == (
        False,
        3,
        PROBLEM_EDITED,
        2,
    )
    assert result.head is not None
    assert result.head.seq == 2


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    log = filled(5)
    forged = dataclasses.replace(log.rows[2], reason="nothing to see")
    log.rows[2] = dataclasses.replace(forged, hash=forged.computed_hash())
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (4, PROBLEM_CHAIN)
    assert "entry 4 links to" in result.detail


def test_a_deleted_middle_row_is_a_sequence_gap() -> None:
    log = filled(5)
    del log.rows[1]
    result = log.verify()
    assert (result.ok, result.first_broken_seq, result.problem) == (False, 2, PROBLEM_GAP)
    assert "entry 2 missing" in result.detail


def test_a_deleted_row_with_the_rest_renumbered_and_rehashed_breaks_the_chain() -> None:
    log = filled(5)
    del log.rows[1]
    for index in range(1, len(log.rows)):
        moved = dataclasses.replace(log.rows[index], seq=index + 1)
        log.rows[index] = dataclasses.replace(moved, hash=moved.computed_hash())
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (2, PROBLEM_CHAIN)


def test_a_deleted_first_row_is_detected() -> None:
    log = filled(3)
    del log.rows[0]
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (1, PROBLEM_GAP)


def test_reordered_rows_are_detected() -> None:
    log = filled(5)
    log.rows[1], log.rows[2] = log.rows[2], log.rows[1]  # stored out of order
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (2, PROBLEM_GAP)
    assert "next stored is 3" in result.detail

    log = filled(5)  # positions swapped by renumbering the two entries, hashes left alone
    log.rows[1], log.rows[2] = (
        dataclasses.replace(log.rows[2], seq=2),
        dataclasses.replace(log.rows[1], seq=3),
    )
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (2, PROBLEM_EDITED)

    log = filled(5)  # ... and rehashed too: the links give it away
    second, third = dataclasses.replace(log.rows[2], seq=2), dataclasses.replace(log.rows[1], seq=3)
    log.rows[1] = dataclasses.replace(second, hash=second.computed_hash())
    log.rows[2] = dataclasses.replace(third, hash=third.computed_hash())
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (2, PROBLEM_CHAIN)


def test_a_duplicated_row_is_out_of_order() -> None:
    log = filled(3)
    log.rows.insert(2, log.rows[1])
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (2, PROBLEM_ORDER)


def test_an_unreadable_row_is_reported_as_edited() -> None:
    rows = [*filled(2).rows, UnreadableRow(3, "payload is not JSON"), UnreadableRow(None, "seq is 'x'")]
    result = check_chain(rows)
    assert (result.first_broken_seq, result.problem, result.checked) == (3, PROBLEM_EDITED, 2)
    result = check_chain([*filled(2).rows, UnreadableRow(None, "seq is 'x'")])
    assert result.first_broken_seq == 3


def test_a_deleted_last_row_needs_an_anchor() -> None:
    log = filled(5)
    anchor = AuditAnchor(5, log.rows[-1].hash)
    assert log.verify(anchor).ok
    assert log.verify(AuditAnchor.parse(f"5:{log.rows[-1].hash[:12]}")).ok
    del log.rows[-1]
    assert log.verify().ok  # the rest is a valid chain: without an anchor this cannot be seen
    result = log.verify(anchor)
    assert (result.ok, result.first_broken_seq, result.problem, result.checked) == (
        False,
        5,
        PROBLEM_TRUNCATED,
        4,
    )

    log.append("user5", "promote", "models:/m/5", "reason 5", {"version": 5, "to": "canary"})
    result = log.verify(anchor)  # a new entry 5 in place of the deleted one: not the one anchored
    assert (result.first_broken_seq, result.problem) == (5, PROBLEM_ANCHOR)

    older = AuditAnchor(3, log.rows[2].hash)  # an older anchor still holds as the log grows
    log.append("x", "gate", "t", "r")
    assert log.verify(older).ok


def test_anchor_parsing() -> None:
    assert AuditAnchor.parse(" 3:ABCDEF012345 ") == AuditAnchor(3, "abcdef012345")
    for bad in ("3", "x:abcdef012345", "0:abcdef012345", "3:abc", "3:" + "g" * 12, "3:" + "a" * 65):
        with pytest.raises(ValueError, match="anchor"):
            AuditAnchor.parse(bad)


def test_bad_arguments_are_refused() -> None:
    log = InMemoryAuditLog()
    with pytest.raises(ValueError, match="actor"):
        log.append(" ", "promote", "t", "r")
    with pytest.raises(ValueError, match="action"):
        log.append("a", "", "t", "r")
    with pytest.raises(ValueError, match="canonical JSON"):
        log.append("a", "gate", "t", "r", {"score": float("nan")})
    with pytest.raises(ValueError, match="canonical JSON"):
        log.append("a", "gate", "t", "r", {"when": datetime.now(UTC)})
    with pytest.raises(ValueError, match="UTF-8"):
        log.append("a", "gate", "t", "\ud800")
    with pytest.raises(ValueError, match="NUL"):
        log.append("a", "gate", "t", "nul\x00")
    with pytest.raises(ValueError, match="timezone-aware"):
        new_entry(
            0,
            GENESIS_HASH,
            actor="a",
            action="g",
            target="t",
            reason="r",
            payload={},
            at=datetime(2026, 1, 1),
        )
    assert log.entries() == []


def test_concurrent_appends_never_fork() -> None:
    log = InMemoryAuditLog()
    threads = [
        threading.Thread(target=lambda w=w: [log.append(f"w{w}", "gate", "t", str(n)) for n in range(50)])
        for w in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [e.seq for e in log.entries()] == list(range(1, 201))
    assert log.verify().ok


def test_default_actor_is_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "operator-7")
    assert default_actor() == "operator-7"
