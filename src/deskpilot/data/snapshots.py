"""Dataset snapshots: immutable, content-addressed Parquet copies of validated, redacted data.

A snapshot's digest is a SHA-256 over its canonical content (column names and the sorted rows), so the same
data gives the same digest however the source file orders its rows, and any change of a text, a label or an
extra column gives a new one. Snapshots are written to a temporary folder and renamed into place, so a
failure never leaves a half-written snapshot behind. A snapshot derived from another (the feedback loop's:
the champion's rows plus accepted corrections) records where it came from in ``metadata.lineage``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from deskpilot import __version__
from deskpilot.data.columns import classify, is_missing, trimmed_labels
from deskpilot.data.contracts import CONTRACT_VERSION, ValidationReport, contract_violation
from deskpilot.data.io import RawTable, read_parquet_frame, write_table_atomic
from deskpilot.errors import (
    EmptyDatasetError,
    SnapshotCorruptError,
    SnapshotError,
    SnapshotNotFoundError,
)

TEXT = "text"
LABEL = "label"
DATA_FILE = "data.parquet"
METADATA_FILE = "metadata.json"
_FIELD_SEP = "\x1f"
_ROW_SEP = "\x1e"


class TextRedactor(Protocol):
    """What a snapshot needs from PII redaction: redacted texts and how many of each kind were found."""

    def redact_many(self, texts: Iterable[str]) -> tuple[list[str], Counter[str]]: ...


@dataclass(frozen=True)
class SnapshotMetadata:
    digest: str
    created_at: str
    source_file: str
    source_format: str
    source_sha256: str
    text_column: str
    label_column: str
    rows: int
    label_counts: dict[str, int]
    columns: list[str]
    contract: dict[str, Any]
    redactions: dict[str, int]
    dropped_invalid_rows: int
    deskpilot_version: str = __version__
    contract_version: str = CONTRACT_VERSION
    lineage: dict[str, Any] | None = None  # a derived snapshot's parent and the changes made to it

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["lineage"] is None:
            del data["lineage"]  # snapshots of a file read as they always did
        return data


@dataclass(frozen=True)
class Snapshot:
    path: Path
    metadata: SnapshotMetadata

    @property
    def digest(self) -> str:
        return self.metadata.digest

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The snapshot's rows in canonical order (the order splits index into); read once, then cached."""
        return read_parquet_frame(self.path / DATA_FILE)


def content_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of the column names and the multiset of rows, independent of row order."""
    columns = sorted(frame.columns)
    rows = frame[columns[0]].astype(str)
    for column in columns[1:]:
        rows = rows + _FIELD_SEP + frame[column].astype(str)
    hasher = hashlib.sha256()
    hasher.update(_FIELD_SEP.join(columns).encode())
    hasher.update(_ROW_SEP.encode())
    hasher.update(_ROW_SEP.join(np.sort(rows.to_numpy(dtype=object))).encode("utf-8"))
    return hasher.hexdigest()


def canonical_frame(
    table: RawTable, report: ValidationReport, redactor: TextRedactor, *, drop_invalid: bool
) -> tuple[pd.DataFrame, Counter[str]]:
    """The rows a snapshot stores: valid, trimmed, redacted, labels as strings, sorted canonically."""
    contract = report.contract
    if contract.label_column is None:
        raise SnapshotError("a snapshot needs a label column")
    if not report.ok and not drop_invalid:
        raise contract_violation(
            report, hint="fix the invalid rows, or pass --drop-invalid to snapshot only the valid ones"
        )
    keep = ~report.invalid_rows
    source = table.frame.loc[keep]
    if source.empty:
        raise EmptyDatasetError(
            f"{table.path}: no valid rows are left after dropping {report.n_invalid_rows:,} invalid ones",
            details={"file": str(table.path)},
        )
    texts, counts = redactor.redact_many([str(t).strip() for t in source[contract.text_column]])
    labels = source[contract.label_column]
    frame = pd.DataFrame(
        {TEXT: texts, LABEL: trimmed_labels(labels, classify(labels)).to_numpy(dtype=object)}
    )
    for column in source.columns:
        if column in (contract.text_column, contract.label_column):
            continue
        stored_as = f"{column}_original" if column in (TEXT, LABEL) else column
        frame[stored_as] = source[column].map(lambda v: "" if is_missing(v) else str(v)).to_numpy()
    return canonical_order(frame), counts


def canonical_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Text, label, then the other columns by name; rows sorted by all of them (the order splits index)."""
    ordered = [TEXT, LABEL, *sorted(c for c in frame.columns if c not in (TEXT, LABEL))]
    return frame.sort_values(ordered, kind="stable", ignore_index=True)[ordered]


class SnapshotStore:
    """Snapshots on the local filesystem, one folder per digest under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(
        self, table: RawTable, report: ValidationReport, redactor: TextRedactor, *, drop_invalid: bool = False
    ) -> Snapshot:
        """Validate-gated, redacted, content-addressed: the same data always lands in the same snapshot."""
        frame, redactions = canonical_frame(table, report, redactor, drop_invalid=drop_invalid)
        digest = content_digest(frame)
        if (self.root / digest).exists():
            return self.get(digest)
        metadata = SnapshotMetadata(
            digest=digest,
            created_at=_now(),
            source_file=str(table.path),
            source_format=table.format,
            source_sha256=_file_sha256(table.path),
            text_column=report.contract.text_column,
            label_column=str(report.contract.label_column),
            rows=len(frame),
            label_counts=_label_counts(frame),
            columns=list(frame.columns),
            contract=report.contract.to_dict(),
            redactions=dict(sorted(redactions.items())),
            dropped_invalid_rows=report.n_invalid_rows,
        )
        return self._write(frame, metadata)

    def derive(
        self,
        parent: Snapshot,
        frame: pd.DataFrame,
        *,
        source: str,
        redactions: dict[str, int],
        lineage: dict[str, Any],
    ) -> Snapshot:
        """A snapshot of ``frame``: the parent's rows changed by the caller, who has redacted and checked
        every new row. The parent's contract and columns carry over; ``lineage`` says what changed."""
        if list(frame.columns[:2]) != [TEXT, LABEL] or frame.empty:
            raise SnapshotError("a derived snapshot needs rows with text and label first")
        frame = canonical_order(frame)
        digest = content_digest(frame)
        if (self.root / digest).exists():
            return self.get(digest)
        meta = parent.metadata
        metadata = SnapshotMetadata(
            digest=digest,
            created_at=_now(),
            source_file=source,
            source_format="derived",
            source_sha256=parent.digest,  # what it was derived from; no file of its own
            text_column=meta.text_column,
            label_column=meta.label_column,
            rows=len(frame),
            label_counts=_label_counts(frame),
            columns=list(frame.columns),
            contract=meta.contract,
            redactions=dict(sorted(redactions.items())),
            dropped_invalid_rows=0,
            lineage=lineage,
        )
        return self._write(frame, metadata)

    def _write(self, frame: pd.DataFrame, metadata: SnapshotMetadata) -> Snapshot:
        digest = metadata.digest
        final = self.root / digest
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            write_table_atomic(frame, staging / DATA_FILE)
            (staging / METADATA_FILE).write_text(json.dumps(metadata.to_dict(), indent=2, sort_keys=True))
            for item in staging.iterdir():
                item.chmod(0o444)
            staging.rename(final)
        except OSError as exc:
            raise SnapshotError(f"could not write snapshot {digest[:12]}: {exc}") from exc
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return Snapshot(final, metadata)

    def get(self, digest_or_prefix: str) -> Snapshot:
        """A snapshot by its full digest or an unambiguous prefix (at least 6 characters)."""
        matches = [s for s in self._folders() if s.name.startswith(digest_or_prefix)]
        if len(digest_or_prefix) < 6 or not matches:
            raise SnapshotNotFoundError(
                f"no snapshot {digest_or_prefix!r} under {self.root}", details={"digest": digest_or_prefix}
            )
        if len(matches) > 1:
            raise SnapshotNotFoundError(
                f"{digest_or_prefix!r} matches {len(matches)} snapshots; give more of the digest",
                details={"digest": digest_or_prefix},
            )
        return self._load(matches[0])

    def all(self) -> list[Snapshot]:
        snapshots = [self._load(folder) for folder in self._folders()]
        return sorted(snapshots, key=lambda s: s.metadata.created_at)

    def verify(self, snapshot: Snapshot) -> None:
        """Recompute the digest from the stored rows; raise if the bytes no longer match the name."""
        try:
            frame = read_parquet_frame(snapshot.path / DATA_FILE)
        except (OSError, ValueError) as exc:
            raise SnapshotCorruptError(f"snapshot {snapshot.digest[:12]} is unreadable: {exc}") from exc
        actual = content_digest(frame)
        if actual != snapshot.digest:
            raise SnapshotCorruptError(
                f"snapshot {snapshot.digest[:12]} was modified: its content now hashes to {actual[:12]}",
                details={"expected": snapshot.digest, "actual": actual},
            )

    def _folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _load(self, folder: Path) -> Snapshot:
        try:
            raw = json.loads((folder / METADATA_FILE).read_text())
            return Snapshot(folder, SnapshotMetadata(**raw))
        except (OSError, ValueError, TypeError) as exc:
            raise SnapshotCorruptError(f"snapshot {folder.name[:12]} has unreadable metadata: {exc}") from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _label_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame[LABEL].value_counts().sort_index().items()}


def _file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()
