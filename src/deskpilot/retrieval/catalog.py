"""Published index versions in one folder, and the ``CURRENT`` pointer a server follows.

    <root>/CURRENT                      the served version number (replaced atomically)
    <root>/encoders/<key>/              the encoder files, stored once per encoder key
    <root>/versions/000001/manifest.json
    <root>/versions/000001/p0000/...    one folder per tenant partition (see :mod:`.storage`)

A version is written to a staging folder and renamed into place complete, so a reader never sees half a
version; ``CURRENT`` moves only after that, so a watcher that polls :meth:`IndexCatalog.current_version`
always finds a whole version behind the number. Versions are never modified after publishing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskpilot.errors import ArtifactError, UsageError
from deskpilot.retrieval.dense import AnnParams
from deskpilot.retrieval.encoding import EncoderFiles, PackagedEncoder, file_sha256
from deskpilot.retrieval.fusion import FusionParams
from deskpilot.retrieval.index import RetrievalIndex
from deskpilot.retrieval.lexical import LexicalParams
from deskpilot.retrieval.storage import (
    fsync_path,
    fsync_tree,
    read_json,
    read_partition,
    write_json,
    write_partition,
)

MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
MANIFEST_FORMAT = 1
_DIGITS = 6


@dataclass(frozen=True)
class IndexVersion:
    """A published version, as its manifest describes it."""

    version: int
    path: Path
    parent: int | None
    created_at: str
    note: str
    sources_digest: str
    encoder_key: str
    counts: dict[str, dict[str, int]]
    manifest: Mapping[str, Any]

    @classmethod
    def from_manifest(cls, path: Path, manifest: Mapping[str, Any]) -> IndexVersion:
        try:
            parent = manifest["parent"]
            return cls(
                version=int(manifest["version"]),
                path=path,
                parent=None if parent is None else int(parent),
                created_at=str(manifest["created_at"]),
                note=str(manifest["note"]),
                sources_digest=str(manifest["sources_digest"]),
                encoder_key=str(manifest["encoder"]["key"]),
                counts={t: {k: int(n) for k, n in c.items()} for t, c in manifest["counts"].items()},
                manifest=manifest,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"index manifest malformed ({exc!r}): {path / MANIFEST_FILE}") from exc


class IndexCatalog:
    """Publishes, lists and loads the index versions under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def current_version(self) -> int | None:
        """The version ``CURRENT`` points at; ``None`` before the first publish. One small file read."""
        path = self.root / CURRENT_FILE
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"cannot read the index pointer {path}: {exc}") from exc
        if not (text.isascii() and text.isdigit()):
            raise ArtifactError(f"the index pointer {path} does not hold a version number")
        return int(text)

    def versions(self) -> list[IndexVersion]:
        """Every published version, oldest first."""
        return [self.version(number) for number in self._numbers()]

    def version(self, number: int) -> IndexVersion:
        path = self._path(number)
        if not path.is_dir():
            raise ArtifactError(f"no index version {number}: {path} does not exist")
        return IndexVersion.from_manifest(path, read_json(path / MANIFEST_FILE))

    def publish(self, index: RetrievalIndex, *, sources_digest: str, note: str = "") -> IndexVersion:
        """Write ``index`` as the next version and point ``CURRENT`` at it."""
        if not isinstance(index.encoder, PackagedEncoder):
            raise UsageError(
                "only an index built with a PackagedEncoder can be published (it carries its files)"
            )
        encoder = self._store_encoder(index.encoder.files)
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = self.versions_dir / f".staging-{uuid.uuid4().hex}"
        try:
            staging.mkdir()
            partitions = [
                write_partition(staging / f"p{position:04d}", index.partitions[tenant])
                for position, tenant in enumerate(index.tenants())
            ]
            manifest: dict[str, Any] = {
                "format": MANIFEST_FORMAT,
                "version": 0,
                "parent": index.origin,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "note": note,
                "sources_digest": sources_digest,
                "encoder": {**encoder, "dimension": index.encoder.dimension},
                "params": {
                    "ann": index.ann.to_dict(),
                    "lexical": index.lexical.to_dict(),
                    "fusion": index.fusion.to_dict(),
                },
                "build": index.stats.to_dict() if index.stats is not None else None,
                "items": len(index),
                "counts": index.counts(),
                "partitions": partitions,
            }
            number = self._rename_into_place(staging, manifest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.activate(number)
        return self.version(number)

    def activate(self, number: int) -> None:
        """Point ``CURRENT`` at an already published version (publishing does this; so does a rollback)."""
        self.version(number)
        temporary = self.root / f".{CURRENT_FILE}.{uuid.uuid4().hex}"
        with temporary.open("w", encoding="ascii") as handle:
            handle.write(f"{number}\n")
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.root / CURRENT_FILE)
        fsync_path(self.root)

    def load(
        self, version: int | None = None, *, verify: bool = True, encoder_threads: int = 0
    ) -> RetrievalIndex:
        """A published version (default: the current one), with its own encoder; vectors are memory-mapped.

        ``verify`` checks every file against the sha256 its manifest recorded.
        """
        number = self.current_version() if version is None else version
        if number is None:
            raise ArtifactError(f"no index has been published under {self.root} ({CURRENT_FILE} is missing)")
        meta = self.version(number)
        manifest = meta.manifest
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ArtifactError(
                f"index manifest format {manifest.get('format')!r} is not {MANIFEST_FORMAT} "
                f"(written by another DeskPilot version?): {meta.path / MANIFEST_FILE}"
            )
        try:
            params = manifest["params"]
            ann, lexical = AnnParams.from_dict(params["ann"]), LexicalParams.from_dict(params["lexical"])
            fusion = FusionParams.from_dict(params["fusion"])
            files = self._encoder_files(manifest["encoder"], verify=verify)
            entries = list(manifest["partitions"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"index manifest malformed ({exc!r}): {meta.path / MANIFEST_FILE}") from exc
        partitions = {}
        for entry in entries:
            try:
                directory = meta.path / str(entry["path"])
            except (KeyError, TypeError) as exc:
                raise ArtifactError(
                    f"index manifest malformed ({exc!r}): {meta.path / MANIFEST_FILE}"
                ) from exc
            partition = read_partition(directory, entry, ann, lexical, verify=verify)
            partitions[partition.tenant] = partition
        encoder = PackagedEncoder(files, threads=encoder_threads)
        dimensions = {encoder.dimension, *(p.vectors.shape[1] for p in partitions.values())}
        if dimensions != {int(manifest["encoder"]["dimension"])}:
            raise ArtifactError(f"vector and encoder dimensions disagree: {meta.path / MANIFEST_FILE}")
        return RetrievalIndex(partitions, encoder, ann=ann, lexical=lexical, fusion=fusion, origin=number)

    def _store_encoder(self, files: EncoderFiles) -> dict[str, Any]:
        """Store the encoder's files under ``encoders/<key>`` once; later publishes check they match."""
        digests = files.digests()
        target = self.root / "encoders" / files.key
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = target.parent / f".staging-{uuid.uuid4().hex}"
            try:
                staging.mkdir()
                for name in files.names:
                    shutil.copyfile(files.directory / name, staging / name)
                fsync_tree(staging)
                try:
                    staging.rename(target)
                except OSError:
                    if not target.exists():  # not a concurrent publisher storing the same key
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        for name, digest in digests.items():
            if file_sha256(target / name) != digest:
                raise ArtifactError(
                    f"the stored encoder {target / name} differs from the one the index was built with"
                )
        return {
            "key": files.key,
            "path": target.relative_to(self.root).as_posix(),
            "model_file": files.model_file,
            "tokenizer_file": files.tokenizer_file,
            "sha256": digests,
        }

    def _encoder_files(self, entry: Mapping[str, Any], *, verify: bool) -> EncoderFiles:
        files = EncoderFiles(
            str(entry["key"]),
            self.root / str(entry["path"]),
            model_file=str(entry["model_file"]),
            tokenizer_file=str(entry["tokenizer_file"]),
        )
        for name in files.names:
            path = files.directory / name
            if not path.is_file():
                raise ArtifactError(f"encoder file missing: {path}")
            if verify and file_sha256(path) != entry["sha256"][name]:
                raise ArtifactError(f"encoder file corrupt (sha256 differs from the manifest): {path}")
        return files

    def _rename_into_place(self, staging: Path, manifest: dict[str, Any]) -> int:
        """Rename the finished staging folder to the next free number (retrying if another publisher won)."""
        for _ in range(100):
            number = max(self._numbers(), default=0) + 1
            manifest["version"] = number
            write_json(staging / MANIFEST_FILE, manifest)
            fsync_tree(staging)
            try:
                staging.rename(self._path(number))
            except OSError:
                if self._path(number).exists():
                    continue
                raise
            fsync_path(self.versions_dir)
            return number
        raise ArtifactError(f"could not claim a version number under {self.versions_dir}")

    def remove_all_but_current(self) -> list[int]:
        """Delete every version but the current one (an erasure must not survive in an older version);
        returns the numbers removed."""
        current = self.current_version()
        removed = [n for n in self._numbers() if n != current]
        for number in removed:
            shutil.rmtree(self._path(number))
        if self.versions_dir.is_dir():  # a publish killed mid-write leaves its staging folder behind
            for staging in self.versions_dir.glob(".staging-*"):
                shutil.rmtree(staging, ignore_errors=True)
        return removed

    def clear(self) -> None:
        """Delete every version and the ``CURRENT`` pointer (the sources are gone)."""
        (self.root / CURRENT_FILE).unlink(missing_ok=True)
        for number in self._numbers():
            shutil.rmtree(self._path(number))

    def _numbers(self) -> list[int]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(int(p.name) for p in self.versions_dir.iterdir() if p.name.isdigit() and p.is_dir())

    def _path(self, number: int) -> Path:
        return self.versions_dir / f"{number:0{_DIGITS}d}"
