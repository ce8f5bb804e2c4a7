"""API keys: format, hashing, the key file the CLI writes and the KeyRing that re-reads it."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import stat
import threading
from pathlib import Path

import pytest

from deskpilot.config import Settings
from deskpilot.errors import ConfigError, UsageError
from deskpilot.service.keys import (
    KeyRecord,
    KeyRing,
    Tenant,
    bearer_token,
    create_key,
    generate_key,
    key_id_of,
    list_keys,
    revoke_key,
)

KEY_FORMAT = re.compile(r"dp_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "home" / "keys.jsonl"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_generated_key_has_the_documented_format_and_stores_only_the_secrets_hash() -> None:
    raw, record = generate_key("acme", label="ci")
    match = KEY_FORMAT.fullmatch(raw)
    assert match is not None
    key_id, secret = match.groups()
    assert record.key_id == key_id == key_id_of(raw)
    assert record.tenant == "acme"
    assert record.label == "ci"
    assert record.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in record.to_json()
    assert generate_key("acme")[0] != raw


def test_keys_file_holds_hashes_never_raw_keys_and_is_private(keys_file: Path) -> None:
    raw, record = create_key(keys_file, "acme")
    text = keys_file.read_text()
    assert raw not in text
    assert raw.split("_", 2)[2] not in text
    assert json.loads(text) == json.loads(record.to_json())
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    revoke_key(keys_file, record.key_id)
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600


def test_authenticate_maps_a_key_to_its_tenant_and_rejects_everything_else(keys_file: Path) -> None:
    raw, record = create_key(keys_file, "acme")
    other, _ = create_key(keys_file, "globex")
    ring = KeyRing(keys_file)
    assert ring.authenticate(raw) == Tenant(name="acme", key_id=record.key_id)
    assert ring.authenticate(other) is not None
    assert ring.authenticate(other).name == "globex"  # type: ignore[union-attr]
    wrong_secret = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    unknown_id = f"dp_{'0' * 8 if record.key_id != '0' * 8 else '1' * 8}_{raw.split('_', 2)[2]}"
    for bad in (None, "", wrong_secret, unknown_id, "dp_", "Bearer " + raw, raw + " ", "x" * 10_000):
        assert ring.authenticate(bad) is None, bad
    assert ring.tenants == {"acme", "globex"}


def test_every_check_is_a_constant_time_comparison(keys_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, _ = create_key(keys_file, "acme")
    ring = KeyRing(keys_file)
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # keys.py looks it up per call
    assert ring.authenticate(raw) is not None
    assert ring.authenticate(raw[:-2] + "zz") is None
    assert ring.authenticate("dp_ffffffff_" + "s" * 43) is None  # unknown id: still one comparison
    assert len(calls) == 3


def test_a_new_key_works_without_a_new_keyring_once_the_interval_passes(
    keys_file: Path, clock: FakeClock
) -> None:
    ring = KeyRing(keys_file, clock=clock)
    assert len(ring) == 0
    raw, _ = create_key(keys_file, "acme")
    clock.now += 0.5
    assert ring.authenticate(raw) is None  # the file is checked at most once a second
    clock.now += 0.6
    assert ring.authenticate(raw) == Tenant("acme", key_id_of(raw) or "")


def test_a_revoked_key_stops_working_without_a_restart(keys_file: Path, clock: FakeClock) -> None:
    raw, record = create_key(keys_file, "acme")
    kept, _ = create_key(keys_file, "acme", label="second")
    ring = KeyRing(keys_file, clock=clock)
    assert ring.authenticate(raw) is not None
    assert revoke_key(keys_file, record.key_id).revoked
    clock.now += 1.1
    assert ring.authenticate(raw) is None
    assert ring.authenticate(kept) is not None
    listed = {r.key_id: r for r in list_keys(keys_file)}
    assert listed[record.key_id].revoked
    assert not listed[key_id_of(kept) or ""].revoked


def test_revoke_accepts_a_full_key_and_refuses_unknown_or_malformed_ids(keys_file: Path) -> None:
    raw, record = create_key(keys_file, "acme")
    assert revoke_key(keys_file, raw).key_id == record.key_id
    with pytest.raises(UsageError, match="no key 0badc0de"):
        revoke_key(keys_file, "0badc0de")
    with pytest.raises(UsageError, match="8 hex digits") as info:
        revoke_key(keys_file, "not-a-key-id")
    assert "not-a-key-id" not in str(info.value)


def test_revoke_keeps_lines_it_cannot_parse(keys_file: Path) -> None:
    _, record = create_key(keys_file, "acme")
    with keys_file.open("a") as handle:
        handle.write("hand-written note\n")
    revoke_key(keys_file, record.key_id)
    assert "hand-written note" in keys_file.read_text()


def test_malformed_lines_are_skipped_with_a_warning_naming_file_and_line(
    keys_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw, record = create_key(keys_file, "acme")
    good = record.to_json()
    bad_lines = [
        "{not json",
        "[1, 2]",
        good.replace('"tenant": "acme"', '"tenant": "no spaces allowed"'),
        json.dumps({"key_id": "12345678", "tenant": "x"}),
    ]
    keys_file.write_text("\n".join([good, *bad_lines, ""]) + '{"key_id": "partial')
    with caplog.at_level(logging.WARNING, logger="deskpilot.service.keys"):
        ring = KeyRing(keys_file)
    assert ring.authenticate(raw) is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4  # the unterminated last line is an append in progress, not an error
    for number, message in zip(range(2, 6), warnings, strict=True):
        assert message.startswith(f"{keys_file}:{number}: skipped malformed key record")
    assert "invalid field 'tenant'" in warnings[2]
    assert "missing field 'secret_sha256'" in warnings[3]


def test_an_unreadable_file_keeps_the_previous_keys(
    keys_file: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, _ = create_key(keys_file, "acme")
    ring = KeyRing(keys_file, clock=clock)
    keys_file.write_bytes(b"\xff\xfe garbage that is not UTF-8\n")
    clock.now += 2
    with caplog.at_level(logging.WARNING, logger="deskpilot.service.keys"):
        assert ring.authenticate(raw) is not None
        clock.now += 2
        assert ring.authenticate(raw) is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # warned once, not once a second
    assert "keeping the previous keys" in warnings[0]

    keys_file.write_text("")
    original = Path.read_text

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        if self == keys_file:
            raise PermissionError(13, "Permission denied")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", denied)
    clock.now += 2
    assert ring.authenticate(raw) is not None
    monkeypatch.undo()
    clock.now += 2
    assert ring.authenticate(raw) is None  # readable again: the (now empty) file is the truth


def test_a_deleted_file_drops_its_keys(keys_file: Path, clock: FakeClock) -> None:
    raw, _ = create_key(keys_file, "acme")
    ring = KeyRing(keys_file, ["beta:a-configured-key-0123456789"], clock=clock)
    keys_file.unlink()
    clock.now += 2
    assert ring.authenticate(raw) is None
    tenant = ring.authenticate("a-configured-key-0123456789")
    assert tenant is not None
    assert tenant.name == "beta"


def test_keys_from_configuration_are_hashed_and_authenticate(keys_file: Path) -> None:
    raw, _ = generate_key("acme")
    ring = KeyRing(None, [f"acme:{raw}", " beta : an-opaque-configured-key-42 "])
    assert ring.authenticate(raw) == Tenant("acme", key_id_of(raw) or "")
    beta = ring.authenticate("an-opaque-configured-key-42")
    assert beta is not None
    assert beta.name == "beta"
    assert ring.authenticate("an-opaque-configured-key-43") is None
    assert "an-opaque" not in repr(ring)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("just-a-key-without-tenant", "expected TENANT:KEY"),
        ("acme:", "expected TENANT:KEY"),
        ("bad tenant:a-long-enough-secret-key", "invalid tenant name"),
        ("acme:short-secret", "16 to 256 characters"),
        ("dp_1a2b3c4d_ABCDEFGHIJKLMNOPQRSTUVWXYZ:acme", "invalid tenant name"),
    ],
)
def test_malformed_configured_keys_fail_at_start_without_echoing_the_key(entry: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        KeyRing(None, ["ok:a-valid-configured-key-000", entry])
    assert "entry 2" in info.value.message
    secretish = entry.partition(":")[2] or entry
    assert secretish not in info.value.message


def test_the_same_configured_key_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="configured twice"):
        KeyRing(None, ["a:same-key-for-two-tenants", "b:same-key-for-two-tenants"])


def test_nothing_that_holds_a_key_shows_it(keys_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, record = create_key(keys_file, "acme")
    secret = raw.split("_", 2)[2]
    ring = KeyRing(keys_file, [f"beta:{raw}x"])
    tenant = ring.authenticate(raw)
    monkeypatch.setenv("DESKPILOT_API_KEYS", f"beta:{raw}x")
    settings = Settings()
    for thing in (record, ring, tenant, settings):
        for text in (repr(thing), str(thing)):
            assert secret not in text
            assert record.secret_sha256 not in text
    assert record.secret_sha256 not in json.dumps(record.public())


def test_settings_read_api_keys_comma_separated_or_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKPILOT_API_KEYS", " acme:key-one-0123456789 , beta:key-two-0123456789 ,")
    assert Settings().api_keys == ["acme:key-one-0123456789", "beta:key-two-0123456789"]
    monkeypatch.setenv("DESKPILOT_API_KEYS", '["acme:key-one-0123456789"]')
    assert Settings().api_keys == ["acme:key-one-0123456789"]
    monkeypatch.delenv("DESKPILOT_API_KEYS")
    settings = Settings(home=Path("/srv/dp"))
    assert settings.api_keys == []
    assert settings.keys_file == Path("/srv/dp/keys.jsonl")


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 65, "ünïcode", "semi;colon"])
def test_bad_tenant_names_are_refused_clearly(keys_file: Path, name: str) -> None:
    with pytest.raises(UsageError, match="invalid tenant name"):
        create_key(keys_file, name)
    assert not keys_file.exists()


def test_labels_must_be_short_printable_text(keys_file: Path) -> None:
    with pytest.raises(UsageError, match="label"):
        create_key(keys_file, "acme", label="two\nlines")


def test_create_appends_after_a_hand_edited_line_without_newline(keys_file: Path) -> None:
    _, first = create_key(keys_file, "acme")
    keys_file.write_text(first.to_json())  # an editor dropped the final newline
    raw, _ = create_key(keys_file, "acme")
    assert len(list_keys(keys_file)) == 2
    assert KeyRing(keys_file).authenticate(raw) is not None


def test_concurrent_creates_and_reads_lose_nothing(keys_file: Path) -> None:
    ring = KeyRing(keys_file, check_interval_s=0.0)
    created: list[str] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            for _ in range(5):
                raw, _ = create_key(keys_file, "acme")
                created.append(raw)
                ring.authenticate(raw)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(list_keys(keys_file)) == 40
    ring.refresh(force=True)
    assert all(ring.authenticate(raw) is not None for raw in created)


def test_list_keys_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert list_keys(tmp_path / "nope.jsonl") == []


def test_from_json_round_trips() -> None:
    _, record = generate_key("acme", label="ci")
    assert KeyRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_a_key_carries_its_role_and_older_records_are_agents(keys_file: Path) -> None:
    raw, record = create_key(keys_file, "acme", role="operator")
    assert record.role == "operator"
    older = {
        "key_id": "0a0b0c0d",
        "tenant": "globex",
        "secret_sha256": "0" * 64,
        "created_at": "",
        "label": None,
    }
    with keys_file.open("a") as handle:
        handle.write(json.dumps({**older, "revoked": False}) + "\n")
    records = {r.key_id: r for r in list_keys(keys_file)}
    assert records["0a0b0c0d"].role == "agent"
    ring = KeyRing(keys_file)
    assert ring.authenticate(raw) == Tenant("acme", record.key_id, role="operator")
    assert ring.active(record.key_id, "acme") == Tenant("acme", record.key_id, role="operator")
    assert ring.active(record.key_id, "globex") is None  # the id of another tenant's key
    revoke_key(keys_file, record.key_id)
    ring.refresh(force=True)
    assert ring.active(record.key_id, "acme") is None


def test_an_unknown_role_is_refused(keys_file: Path) -> None:
    with pytest.raises(UsageError, match="invalid role"):
        create_key(keys_file, "acme", role="admin")
    assert not keys_file.exists() or "admin" not in keys_file.read_text()
    line = json.dumps(
        {
            "key_id": "0a0b0c0d",
            "tenant": "acme",
            "secret_sha256": "0" * 64,
            "created_at": "",
            "label": None,
            "revoked": False,
            "role": "root",
        }
    )
    with pytest.raises(ValueError, match="role"):
        KeyRecord.from_json(line)
