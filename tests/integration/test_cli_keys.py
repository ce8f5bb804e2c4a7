"""``deskpilot keys create|list|revoke`` through the installed console script, as an operator runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deskpilot.service.keys import KeyRing
from tests.helpers import run_cli

KEY_LINE = re.compile(r"dp_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")


def test_create_list_revoke_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = run_cli("keys", "create", "--tenant", "acme", "--label", "support desk", home=home)
    assert created.returncode == 0, created.stderr
    match = KEY_LINE.fullmatch(created.stdout.strip())
    assert match is not None, created.stdout
    raw_key, key_id = match.group(0), match.group(1)
    assert "cannot be shown again" in created.stderr
    assert raw_key not in created.stderr

    keys_file = home / "keys.jsonl"
    assert raw_key not in keys_file.read_text()
    ring = KeyRing(keys_file)
    tenant = ring.authenticate(raw_key)
    assert tenant is not None
    assert (tenant.name, tenant.key_id) == ("acme", key_id)

    listed = run_cli("keys", "list", home=home)
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout
    assert "acme" in listed.stdout
    assert "support desk" in listed.stdout
    assert "active" in listed.stdout
    assert raw_key not in listed.stdout
    assert raw_key.split("_", 2)[2] not in listed.stdout

    revoked = run_cli("keys", "revoke", key_id, home=home)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked key {key_id} (tenant acme)" in revoked.stdout
    ring.refresh(force=True)
    assert ring.authenticate(raw_key) is None

    as_json = run_cli("keys", "list", "--json", home=home)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert rows == [
        {
            "key_id": key_id,
            "tenant": "acme",
            "created_at": rows[0]["created_at"],
            "label": "support desk",
            "revoked": True,
            "role": "agent",
            "source": "file",
        }
    ]
    assert "secret" not in as_json.stdout


def test_bad_tenant_name_is_a_usage_error_without_traceback(tmp_path: Path) -> None:
    result = run_cli("keys", "create", "--tenant", "no spaces/please", home=tmp_path)
    assert result.returncode == 2
    assert "invalid tenant name 'no spaces/please'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "keys.jsonl").exists()


def test_revoking_an_unknown_key_fails_cleanly(tmp_path: Path) -> None:
    result = run_cli("keys", "revoke", "0badc0de", home=tmp_path)
    assert result.returncode == 2
    assert "no key 0badc0de" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_shows_configured_keys_by_id_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKPILOT_API_KEYS", "beta:configured-secret-value-123")
    result = run_cli("keys", "list", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "beta" in result.stdout
    assert "config" in result.stdout
    assert "configured-secret-value-123" not in result.stdout


def test_an_operator_key_is_created_with_its_role(tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = run_cli("keys", "create", "--tenant", "acme", "--role", "operator", home=home)
    assert created.returncode == 0, created.stderr
    assert "role operator" in created.stderr
    listed = json.loads(run_cli("keys", "list", "--json", home=home).stdout)
    assert [row["role"] for row in listed] == ["operator"]
    refused = run_cli("keys", "create", "--tenant", "acme", "--role", "root", home=home)
    assert refused.returncode != 0
    assert "invalid role" in refused.stderr
    assert len(json.loads(run_cli("keys", "list", "--json", home=home).stdout)) == 1
