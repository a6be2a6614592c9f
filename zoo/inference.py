"""Predict and evaluate with a model directory (torch) or an export directory (onnxruntime, no torch).

Both are "predictors": ``.labels``, ``.task`` (a zoo.tasks.Task), ``.max_length``, ``.tokenizer``,
``.long_text`` (zoo.windows.LongText: how texts longer than max_length are read) and
``.logits(input_ids, attention_mask) -> np.ndarray``. torch is imported only for a model directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .constants import CONFIG_NAME, ONNX_NAME
from .data import Table, pad
from .errors import ZooError
from .tokenizer import ids_of
from .windows import LongText, note_cut, setting
from .windows import encode as encode_windows


class ModelPredictor:
    """A ZooModel behind the predictor interface (eval mode, no gradients, optional autocast)."""

    def __init__(self, model, device: str = "cpu", precision: str = "fp32"):
        self.model, self.device, self.precision = model, device, precision
        self.task = model.task
        self.labels = model.spec.labels
        self.num_labels = int(model.spec.sizes["num_labels"])
        self.tokenizer = model.tokenizer
        self.max_length = int(model.spec.tokenizer.get("max_length") or model.spec.sizes["max_length"])
        self.long_text = LongText.from_record(model.spec.tokenizer.get("long_text"))

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        from .device import autocast

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), autocast(self.device, self.precision):
                out = self.model(
                    torch.from_numpy(input_ids).to(self.device),
                    torch.from_numpy(attention_mask).to(self.device),
                )
            return out.float().cpu().numpy()
        finally:
            self.model.train(was_training)


def load_predictor(path: str | Path):
    """An export directory (model.onnx) runs on onnxruntime without torch; a model directory on torch."""
    path = Path(path)
    if (path / ONNX_NAME).is_file():
        from zoo.export.runtime import OnnxModel

        return OnnxModel(path)
    if not (path / CONFIG_NAME).is_file():
        raise ZooError(f"{path}: not a model or export directory (no {CONFIG_NAME} or {ONNX_NAME})")
    from .model import load_model

    return ModelPredictor(load_model(path))


def _require_tokenizer(predictor) -> Any:
    if predictor.tokenizer is None:
        raise ZooError("the model has no tokenizer; fine-tune it first (zoo finetune trains one)")
    return predictor.tokenizer


def row_logits(predictor, ids: Sequence[np.ndarray], batch_size: int = 64) -> list[np.ndarray]:
    """Logits per row, batched by similar length so little padding is computed."""
    from .tokenizer import pad_id

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ZooError(f"--batch-size must be a positive integer, got {batch_size}")
    pad_value = pad_id(predictor.tokenizer) if predictor.tokenizer is not None else 0
    order = np.argsort([-len(r) for r in ids], kind="stable")
    out: list[np.ndarray | None] = [None] * len(ids)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        rows = [ids[i] for i in index]
        logits = predictor.logits(
            pad(rows, pad_value), pad([np.ones(len(r), dtype=np.int64) for r in rows], 0)
        )
        for j, i in enumerate(index):
            out[i] = logits[j, : len(rows[j])] if logits.ndim == 3 else logits[j]
    return out  # type: ignore[return-value]


def table_outputs(predictor, table: Table, batch_size: int = 64) -> tuple[list[Any], list[np.ndarray]]:
    """The task's encodings of the table's rows, and the model's outputs for each of their sequences
    (in ``task.sequences`` order; one per row for a one-text task). Texts longer than the model's length
    are cut, or read in windows whose outputs the task combines per text (``predictor.long_text``)."""
    tokenizer, task, long_text = _require_tokenizer(predictor), predictor.task, setting(predictor)
    encodings, plan = encode_windows(task, tokenizer, table, predictor.max_length, long_text)
    if plan is not None:
        return encodings, plan.combine(task, row_logits(predictor, plan.ids, batch_size), long_text.how)
    note_cut(predictor, task.sequences(encodings), predictor.max_length, long_text)
    return encodings, row_logits(predictor, task.sequences(ids_of(encodings)), batch_size)


def evaluate_table(
    predictor, table: Table, batch_size: int = 64, computed: tuple[list[Any], list[np.ndarray]] | None = None
) -> dict[str, Any]:
    """Tokenize a labelled table, predict, and score it with the task's metrics. ``computed``: what
    ``table_outputs(predictor, table)`` returned, when the caller needs the outputs too (not run again)."""
    task = predictor.task
    names = list(predictor.labels or []) or None
    if task.named_labels and not names:
        raise ZooError("the model has no label names; fine-tune it on labelled data first")
    encodings, outputs = computed or table_outputs(predictor, table, batch_size)
    num_labels = getattr(predictor, "num_labels", None) or (int(outputs[0].shape[-1]) if outputs else 1)
    return task.evaluate(outputs, task.sequences(task.targets(table, names, num_labels, encodings)), names)


def predict_table(predictor, table: Table, batch_size: int = 64, top_k: int = 1) -> list[dict[str, Any]]:
    """One JSON-ready result per row, as the model's task words it (label and probability, labels, values...)."""
    encodings, outputs = table_outputs(predictor, table, batch_size)
    return predictor.task.predict(table, encodings, outputs, list(predictor.labels or []) or None, top_k)


__all__ = [
    "ModelPredictor",
    "evaluate_table",
    "load_predictor",
    "predict_table",
    "row_logits",
    "table_outputs",
]
