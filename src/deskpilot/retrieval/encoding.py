"""The sentence encoder an index is built with, packaged with the files it runs from.

Serving has no torch, so it cannot export the encoder itself: a published index carries the exported ONNX
graph and tokenizer (stored once per encoder key in the catalog) and records their digests, so a loaded index
always embeds queries with exactly the encoder that embedded its items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from deskpilot.errors import ArtifactError
from deskpilot.models.encoder import ENCODER_FILE, ENCODER_INT8_FILE, TOKENIZER_FILE, OnnxSentenceEncoder

EncoderPrecision = Literal["fp32", "int8"]


class TextEncoder(Protocol):
    """What an index needs from an encoder: unit-length float32 rows, one per text, in input order."""

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EncoderFiles:
    """An exported encoder on disk: ``key`` names it (model, package version, opset, precision)."""

    key: str
    directory: Path
    model_file: str = ENCODER_FILE
    tokenizer_file: str = TOKENIZER_FILE

    @property
    def names(self) -> tuple[str, str]:
        return self.model_file, self.tokenizer_file

    def digests(self) -> dict[str, str]:
        """sha256 of each file, by file name."""
        return {name: file_sha256(self.directory / name) for name in self.names}


class PackagedEncoder:
    """An ONNX sentence encoder that knows its files, so that an index built with it can carry it along."""

    def __init__(self, files: EncoderFiles, *, threads: int = 0, batch_size: int = 64) -> None:
        self.files = files
        self.threads = threads
        self.batch_size = batch_size
        for name in files.names:
            if not (files.directory / name).is_file():
                raise ArtifactError(f"encoder file missing: {files.directory / name}")
        self._runtime = OnnxSentenceEncoder(
            files.directory / files.model_file,
            files.directory / files.tokenizer_file,
            threads=threads,
            batch_size=batch_size,
        )

    @classmethod
    def from_export(
        cls, export_dir: Path, *, precision: EncoderPrecision = "fp32", threads: int = 0
    ) -> PackagedEncoder:
        """The encoder in a folder made by :func:`deskpilot.models.encoder_export.ensure_encoder`.

        The folder's name is its cache key; int8 gets its own key since its vectors differ from fp32's.
        """
        model_file = ENCODER_INT8_FILE if precision == "int8" else ENCODER_FILE
        key = export_dir.name + ("-int8" if precision == "int8" else "")
        return cls(EncoderFiles(key, export_dir, model_file=model_file), threads=threads)

    @property
    def key(self) -> str:
        return self.files.key

    @property
    def dimension(self) -> int:
        return self._runtime.dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._runtime.encode(texts)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks; a missing file is an :class:`ArtifactError` naming it."""
    hasher = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                hasher.update(block)
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return hasher.hexdigest()
