"""The API key never prints: masked in repr, str, f-strings and pickling; load errors name the source only."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from deskpilot.copilot.gateway.secrets import Secret, load_secret
from deskpilot.errors import ConfigError

KEY = "sk-live-0123456789abcdef"


def test_a_secret_is_masked_everywhere_it_could_be_printed() -> None:
    secret = Secret(KEY)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert KEY not in shown
        assert "*****" in shown
    assert secret.reveal() == KEY
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_scrub_masks_the_value_inside_any_text() -> None:
    assert Secret(KEY).scrub(f"bad key {KEY}!") == "bad key **********!"


def test_secrets_compare_by_value_without_revealing_it() -> None:
    assert Secret(KEY) == Secret(KEY)
    assert Secret(KEY) != Secret(KEY + "x")
    with pytest.raises(ConfigError):
        Secret("")


def test_load_from_an_environment_variable() -> None:
    assert load_secret(env="LLM_KEY", environ={"LLM_KEY": f"  {KEY}\n"}) == Secret(KEY)
    with pytest.raises(ConfigError, match="LLM_KEY") as info:
        load_secret(env="LLM_KEY", environ={"LLM_KEY": " "})
    assert KEY not in str(info.value)


def test_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KEY + "\n", encoding="utf-8")
    assert load_secret(file=path) == Secret(KEY)
    with pytest.raises(ConfigError, match="cannot read"):
        load_secret(file=tmp_path / "missing")
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        load_secret(file=str(tmp_path / "empty"))


def test_no_source_means_no_key_and_two_sources_are_refused(tmp_path: Path) -> None:
    assert load_secret() is None
    with pytest.raises(ConfigError, match="not both"):
        load_secret(env="X", file=tmp_path / "k")
