"""Plain helpers shared by the test suites (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

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


class NoRedaction:
    """A redactor that leaves text alone, for tests about something other than PII."""

    def redact_many(self, texts: Iterable[str]) -> tuple[list[str], Counter[str]]:
        return list(texts), Counter()


def bundled_split(
    labels: int, per_label: int, validation_per_label: int
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Train texts, train labels, validation texts, validation labels from a slice of the bundled data."""
    frame = bundled_subset(labels=labels, per_label=per_label)
    validation = frame.groupby("label").head(validation_per_label)
    train = frame.drop(validation.index)
    return (
        train["text"].tolist(),
        train["label"].tolist(),
        validation["text"].tolist(),
        validation["label"].tolist(),
    )


def bundled_subset(labels: int = 8, per_label: int = 40, seed: int = 0) -> pd.DataFrame:
    """A quick-to-train slice of the bundled data: ``per_label`` messages of the first ``labels`` intents."""
    frame = pd.read_csv(BUNDLED_DATA)
    keep = sorted(frame["category"].unique())[:labels]
    parts = [frame[frame["category"] == label].sample(n=per_label, random_state=seed) for label in keep]
    return pd.concat(parts, ignore_index=True).rename(columns={"category": "label"})


DESKPILOT = Path(sys.executable).with_name("deskpilot")


def run_cli(*args: str | Path, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``deskpilot`` console script as a user would, with its state under ``home``."""
    env = {**os.environ, "DESKPILOT_HOME": str(home)}
    env.pop("DESKPILOT_DEBUG", None)
    env.pop("DESKPILOT_TRACKING_URI", None)
    return subprocess.run(
        [str(DESKPILOT), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        input=stdin,
        timeout=600,
        check=False,
    )


@contextmanager
def fresh_database(base: str, tag: str = "") -> Iterator[str]:
    """An empty PostgreSQL database beside the one ``base`` names (its role needs CREATEDB), dropped
    afterwards; its name carries ``tag`` to tell whose it was."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    url = sa.make_url(base)
    name = f"{url.database}_{tag}{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
