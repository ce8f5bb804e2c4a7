"""Sentence embeddings from an exported ONNX encoder: onnxruntime + tokenizers, no torch.

Texts are sorted by token length before batching, so each batch pads only to its own longest text; short
support messages then cost a fraction of a fixed-length pass. The graph itself mean-pools and L2-normalizes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# ONNX Runtime already spreads each batch over every core. The tokenizer's own (rayon) thread pool only adds
# workers that spin-wait after each call and take those cores from ONNX Runtime and the server's event loop:
# on 2 cores, turning it off cut the served embed model's single-request p50 from 8.7 to 6.3 ms and raised its
# throughput at 32 concurrent users from 183 to 215 req/s, with no loss in batch scoring (bench/RESULTS.md).
# ``setdefault``: an operator's explicit TOKENIZERS_PARALLELISM still wins.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from tokenizers import Tokenizer

from deskpilot.errors import ArtifactError

ENCODER_FILE = "encoder.onnx"
ENCODER_INT8_FILE = "encoder.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
_UNPICKLED_THREADS: list[int | None] = [None]  # see threads_when_unpickled


@contextlib.contextmanager
def threads_when_unpickled(threads: int) -> Iterator[None]:
    """Encoders unpickled inside this block run ``threads`` ONNX Runtime threads, whatever they were built
    with: a Ray actor holds one CPU, and a session as wide as the machine in each actor oversubscribes it."""
    before, _UNPICKLED_THREADS[0] = _UNPICKLED_THREADS[0], threads
    try:
        yield
    finally:
        _UNPICKLED_THREADS[0] = before


class OnnxSentenceEncoder:
    """Runs a text → vector ONNX graph (sentence embeddings, or a fine-tuned classifier's logits).

    ``model`` is a file, or the serialized graph itself for a model that was just exported in memory.
    An encoder pickles (for Ray actors, which may run on machines without its files) as the graph's bytes
    and the tokenizer's JSON, and rebuilds its ONNX Runtime session on unpickling.
    """

    def __init__(
        self,
        model: Path | bytes,
        tokenizer_path: Path,
        *,
        max_length: int = 256,
        batch_size: int = 64,
        threads: int = 0,
    ) -> None:
        self.model_path = model if isinstance(model, Path) else None
        self.tokenizer_path = tokenizer_path
        self.max_length = max_length
        self.batch_size = batch_size
        self.threads = threads
        self._model_bytes = model if isinstance(model, bytes) else None
        source = str(model) if isinstance(model, Path) else model
        self._start(source, Tokenizer.from_file(str(tokenizer_path)))

    def _start(self, source: str | bytes, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_length)
        import onnxruntime as ort  # with the first encoder: importing it writes a file to TMPDIR

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # idle worker threads spin-wait by default: free in a benchmark, stolen CPU in a server
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.dimension = int(self._session.get_outputs()[0].shape[-1])

    def __getstate__(self) -> dict[str, Any]:
        """The graph as bytes (read from its file now) and the tokenizer as JSON: no session, no paths
        that another machine would need."""
        graph = self._model_bytes
        if graph is None and self.model_path is not None:
            try:
                graph = self.model_path.read_bytes()
            except OSError as exc:
                raise ArtifactError(
                    f"{self.model_path}: cannot read the encoder to send it to workers ({exc.strerror})",
                    details={"file": str(self.model_path)},
                ) from exc
        return {
            "model_path": self.model_path,
            "tokenizer_path": self.tokenizer_path,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "graph": graph,
            "tokenizer": self._tokenizer.to_str(),
            "kept_bytes": self._model_bytes is not None,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.model_path = state["model_path"]
        self.tokenizer_path = state["tokenizer_path"]
        self.max_length = state["max_length"]
        self.batch_size = state["batch_size"]
        override = _UNPICKLED_THREADS[0]
        self.threads = state["threads"] if override is None else override
        here = self.model_path is not None and self.model_path.is_file()
        # bytes are kept only where no file has them, so that this copy can be pickled again
        self._model_bytes = state["graph"] if state["kept_bytes"] or not here else None
        self._start(state["graph"], Tokenizer.from_str(state["tokenizer"]))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text, in input order."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for batch in _length_buckets(order, lengths, self.batch_size):
            width = int(lengths[batch].max())
            ids = np.zeros((batch.size, width), dtype=np.int64)
            mask = np.zeros((batch.size, width), dtype=np.int64)
            for row, index in enumerate(batch):
                token_ids = encodings[index].ids
                ids[row, : len(token_ids)] = token_ids
                mask[row, : len(token_ids)] = 1
            (embeddings,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[batch] = embeddings
        return out


def _length_buckets(order: np.ndarray, lengths: np.ndarray, size: int) -> list[np.ndarray]:
    """Split length-sorted indices into batches of at most ``size`` whose longest text is at most ~1.5x
    the shortest: every row is padded to the longest, so mixing 8- and 60-token texts wastes most of a batch.
    """
    batches: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        at_end = end == len(order)
        if at_end or end - start == size or lengths[order[end]] > 1.5 * max(int(lengths[order[start]]), 8):
            batches.append(order[start:end])
            start = end
    return batches
