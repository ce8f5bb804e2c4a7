"""Plain helpers shared by the test suites (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DATA = REPO_ROOT / "data" / "banking77" / "train.csv"

WriteRows = Callable[[str, Sequence[dict[str, Any]]], Path]


def labelled_rows(n_labels: int = 3, per_label: int = 6) -> list[dict[str, Any]]:
    """A small valid dataset: distinct texts, ``per_label`` examples of each of ``n_labels`` labels."""
    return [
        {"text": f"message {i} about topic {label}", "label": f"intent_{label}"}
        for label in range(n_labels)
        for i in range(per_label)
    ]
