"""The audit chain's hashing and verification, on the in-memory log."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import stat
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from deskpilot.errors import ConfigError, StoreError
from deskpilot.store.audit import (
    GENESIS_HASH,
    PROBLEM_ANCHOR,
    PROBLEM_CHAIN,
    PROBLEM_EDITED,
    PROBLEM_GAP,
    PROBLEM_KEY,
    PROBLEM_MAC,
    PROBLEM_ORDER,
    PROBLEM_TRUNCATED,
    PROBLEM_UNKEYED,
    AuditAnchor,
    AuditEntry,
    InMemoryAuditLog,
    UnreadableRow,
    canonical_bytes,
    check_chain,
    default_actor,
    new_entry,
)
from deskpilot.store.audit_seal import ChainSeal, HeadLedger, key_id_of, load_keys, parse_secret

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


# --- Keys and recorded heads (finding 5): what the hashes alone cannot tell -------------------------------


def sealed(tmp_path: Path, *, configured: tuple[str, ...] = ()) -> tuple[InMemoryAuditLog, ChainSeal]:
    key_file = tmp_path / "audit.key"
    seal = ChainSeal(
        lambda: load_keys(list(configured), key_file, create=True),
        HeadLedger(tmp_path / "heads.jsonl"),
        key_file=key_file,
    )
    return InMemoryAuditLog(seal=seal), seal


def test_a_sealed_log_signs_records_and_checks_every_entry(tmp_path: Path) -> None:
    log, seal = sealed(tmp_path)
    for i in range(3):
        log.append("alice", "promote", f"models:/m/{i}", "r", {"i": i})
    assert all(e.keyed and e.key_id == seal.keys.signing_id for e in log.entries())
    assert [a.seq for a in seal.anchors("memory")] == [1, 2, 3]
    assert seal.anchors("sqlite:////elsewhere.db") == []
    result = log.verify()
    assert (result.ok, result.checked, result.unkeyed, result.macs_checked, result.anchors) == (
        True,
        3,
        0,
        True,
        3,
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"mac": "f" * 64}, PROBLEM_MAC),
        ({"key_id": "0123456789ab"}, PROBLEM_KEY),
        ({"key_id": None, "mac": None}, PROBLEM_UNKEYED),
    ],
)
def test_a_tampered_mac_is_found_at_its_entry(
    tmp_path: Path, change: dict[str, object], problem: str
) -> None:
    log, _ = sealed(tmp_path)
    for i in range(3):
        log.append("alice", "promote", f"models:/m/{i}", "r", {"i": i})
    log.rows[1] = dataclasses.replace(log.rows[1], **change)  # type: ignore[arg-type]
    result = log.verify()
    assert (result.ok, result.first_broken_seq, result.problem, result.checked) == (False, 2, problem, 1)


def test_recorded_heads_find_a_deleted_tail_and_a_stripped_key(tmp_path: Path) -> None:
    log, _ = sealed(tmp_path)
    for i in range(3):
        log.append("alice", "promote", f"models:/m/{i}", "r", {"i": i})
    kept = list(log.rows)
    del log.rows[2:]
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (3, PROBLEM_TRUNCATED)
    # The same content unkeyed from the genesis: the hashes hold, the recorded key ids do not.
    log.rows[:] = [dataclasses.replace(e, key_id=None, mac=None) for e in kept]
    assert check_chain(log.rows).ok  # nothing to compare with: three unkeyed entries
    result = log.verify()
    assert (result.first_broken_seq, result.problem) == (1, PROBLEM_ANCHOR)


def test_unkeyed_entries_may_only_start_the_chain(tmp_path: Path) -> None:
    plain = InMemoryAuditLog()
    plain.append("bob", "gate", "models:/m/1", "old release")
    log, _ = sealed(tmp_path)
    log.rows = list(plain.rows)
    log.append("alice", "promote", "models:/m/1", "r")
    result = log.verify()
    assert (result.ok, result.checked, result.unkeyed, result.keyed) == (True, 2, 1, 1)
    log.use_seal(None)
    with pytest.raises(StoreError, match="no audit key"):
        log.append("mallory", "promote", "models:/m/9", "unkeyed after keyed")


def test_keys_come_from_the_setting_first_then_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_keys(["short"], tmp_path / "k", create=True)
    configured = load_keys(["c" * 40], tmp_path / "k", create=True)
    assert not (tmp_path / "k").exists()  # a configured key needs no file
    assert configured.signing_id == key_id_of(b"c" * 40)
    assert parse_secret("ab" * 32) == bytes.fromhex("ab" * 32)
    created = load_keys([], tmp_path / "k", create=True)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert load_keys([], tmp_path / "k", create=False).keys == created.keys
    assert load_keys([], tmp_path / "missing", create=False).signing_id is None
    both = load_keys(["c" * 40], tmp_path / "k", create=False)
    assert both.signing_id == configured.signing_id
    assert set(both.keys) == {configured.signing_id, created.signing_id}
    first, second = both.digest("ticket_id", "T-1"), created.digest("ticket_id", "T-1")
    assert first != second
    assert first == both.digest("ticket_id", "T-1")
    (tmp_path / "k").write_text("not hex\n")
    with pytest.raises(ConfigError, match=r"k:1: not an audit key"):
        load_keys([], tmp_path / "k", create=False)


def test_a_ledger_line_that_is_not_a_head_is_an_error_unless_it_is_a_cut_last_line(tmp_path: Path) -> None:
    log, seal = sealed(tmp_path)
    log.append("alice", "gate", "models:/m/1", "r")
    ledger = tmp_path / "heads.jsonl"
    with ledger.open("a") as handle:
        handle.write('{"store": "memory", "seq": 2, "ha')  # a crash mid-write
    assert [a.seq for a in seal.anchors("memory")] == [1]
    ledger.write_text('garbage\n{"store": "memory"}\n')
    with pytest.raises(ConfigError, match=r"heads\.jsonl:1: not a recorded audit head"):
        seal.anchors("memory")
