"""One partition's files inside a published version, and reading them back.

    <partition>/items.jsonl   one KnowledgeItem per line, row = position
    <partition>/vectors.npy   float32 (items × dimension), memory-mapped on load
    <partition>/dense.faiss   the HNSW graph (absent for an exact partition: rebuilt from the vectors)
    <partition>/bm25/         bm25s' arrays and vocabulary

Every failure to read is an :class:`ArtifactError` that names the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import numpy as np

from deskpilot.errors import ArtifactError
from deskpilot.retrieval.dense import AnnKind, AnnParams, DenseIndex
from deskpilot.retrieval.encoding import file_sha256
from deskpilot.retrieval.items import KINDS, Kind, KnowledgeItem
from deskpilot.retrieval.lexical import LexicalIndex, LexicalParams
from deskpilot.retrieval.partition import Partition

ITEMS_FILE = "items.jsonl"
VECTORS_FILE = "vectors.npy"
DENSE_FILE = "dense.faiss"
LEXICAL_DIR = "bm25"


def write_partition(directory: Path, partition: Partition) -> dict[str, Any]:
    """Write ``partition`` under ``directory`` and return its manifest entry (file digests included)."""
    directory.mkdir(parents=True)
    with (directory / ITEMS_FILE).open("w", encoding="utf-8") as handle:
        for item in partition.items:
            handle.write(json.dumps(asdict(item), ensure_ascii=False, separators=(",", ":")) + "\n")
    np.save(directory / VECTORS_FILE, np.ascontiguousarray(partition.vectors, dtype=np.float32))
    partition.dense.save(directory / DENSE_FILE)
    partition.lexical.save(directory / LEXICAL_DIR)
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    return {
        "tenant": partition.tenant,
        "path": directory.name,
        "items": len(partition.items),
        "counts": partition.counts(),
        "ann": {"kind": partition.dense.kind, **partition.dense.describe()},
        "files": {path.relative_to(directory).as_posix(): file_sha256(path) for path in files},
    }


def read_partition(
    directory: Path, entry: Mapping[str, Any], ann: AnnParams, lexical: LexicalParams, *, verify: bool
) -> Partition:
    """The partition :func:`write_partition` wrote, checked against its manifest entry."""
    files: Mapping[str, str] = entry["files"]
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"index file missing: {path}")
        if verify and file_sha256(path) != digest:
            raise ArtifactError(f"index file corrupt (sha256 differs from the manifest): {path}")
    tenant = str(entry["tenant"])
    size = int(entry["items"])
    with _reading(directory / ITEMS_FILE):
        items = [_item(json.loads(line)) for line in (directory / ITEMS_FILE).read_text("utf-8").splitlines()]
        if len(items) != size or any(item.tenant != tenant for item in items):
            raise ValueError(f"expected {size} items of tenant {tenant!r}")
    with _reading(directory / VECTORS_FILE):
        vectors = np.load(directory / VECTORS_FILE, mmap_mode="r", allow_pickle=False)
        if vectors.ndim != 2 or len(vectors) != size or vectors.dtype != np.float32:
            raise ValueError(f"expected {size} float32 rows, found {vectors.dtype} {vectors.shape}")
    kind = cast(AnnKind, entry["ann"]["kind"])
    with _reading(directory / DENSE_FILE):
        dense = DenseIndex.load(directory / DENSE_FILE, kind, ann, vectors)
    with _reading(directory / LEXICAL_DIR):
        bm25 = LexicalIndex.load(directory / LEXICAL_DIR, lexical, size)
    with _reading(directory / ITEMS_FILE):
        return Partition.assemble(tenant, items, vectors, dense, bm25)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write and fsync a JSON file (the caller renames it or its folder into place)."""
    with path.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_json(path: Path) -> dict[str, Any]:
    with _reading(path):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk, so a rename publishes complete bytes."""
    for path in sorted(root.rglob("*"), reverse=True):
        fsync_path(path)
    fsync_path(root)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except ArtifactError:
        raise
    except FileNotFoundError as exc:
        raise ArtifactError(f"index file missing: {path}") from exc
    except Exception as exc:  # json, numpy, faiss and bm25s each fail in their own way
        reason = str(exc).strip().split("\n")[0].split(". ")[0][:200] or type(exc).__name__
        raise ArtifactError(f"index file unreadable: {path}: {reason}") from exc


def _item(data: Mapping[str, Any]) -> KnowledgeItem:
    kind = data["kind"]
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    return KnowledgeItem(
        id=str(data["id"]),
        tenant=str(data["tenant"]),
        kind=cast(Kind, kind),
        text=str(data["text"]),
        title=data.get("title"),
        intents=tuple(str(intent) for intent in data.get("intents", ())),
        reply=data.get("reply"),
        source=str(data.get("source", "")),
    )
