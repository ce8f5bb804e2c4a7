"""Fixtures shared by every suite."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.helpers import WriteRows, fresh_database


@pytest.fixture
def write_rows(tmp_path: Path) -> WriteRows:
    """Write rows to ``tmp_path/name`` in the format its extension names."""

    def write(name: str, rows: Sequence[dict[str, Any]]) -> Path:
        path = tmp_path / name
        if path.suffix == ".jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        elif path.suffix == ".parquet":
            pd.DataFrame(list(rows)).to_parquet(path, index=False)
        else:
            pd.DataFrame(list(rows)).to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
        return path

    return write


@pytest.fixture(scope="session")
def encoder_cache() -> Path:
    """Exported ONNX encoders, kept across test runs (the first export takes about a minute)."""
    from tests.helpers import REPO_ROOT

    path = REPO_ROOT / ".cache" / "encoders"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards.

    Created beside the one ``DESKPILOT_TEST_DATABASE_URL`` names, whose role needs CREATEDB (`.ci/run` sets
    both up). Skips when the variable is unset, unless ``DESKPILOT_REQUIRE_POSTGRES=1`` makes that fail.
    """
    base = os.environ.get("DESKPILOT_TEST_DATABASE_URL")
    if not base:
        if os.environ.get("DESKPILOT_REQUIRE_POSTGRES"):
            pytest.fail("DESKPILOT_REQUIRE_POSTGRES is set but DESKPILOT_TEST_DATABASE_URL is not")
        pytest.skip("no PostgreSQL: DESKPILOT_TEST_DATABASE_URL is not set")
    with fresh_database(base) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on each supported database: a SQLite file, and the PostgreSQL test database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))
