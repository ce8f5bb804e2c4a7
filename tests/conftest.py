"""Fixtures shared by every suite."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.helpers import WriteRows


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
