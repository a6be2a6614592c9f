"""Predict and evaluate with a model directory (torch) or an export directory (onnxruntime, no torch).

Both are "predictors": ``.labels``, ``.task``, ``.max_length``, ``.tokenizer`` and
``.logits(input_ids, attention_mask) -> np.ndarray``. torch is imported only for a model directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import metrics as M
from .data import IGNORE_INDEX, Table, encode_labels, pad, tokenize
from .errors import ZooError


class ModelPredictor:
    """A ZooModel behind the predictor interface (eval mode, no gradients, optional autocast)."""

    def __init__(self, model, device: str = "cpu", precision: str = "fp32"):
        from .manager import get_registry

        self.model, self.device, self.precision = model, device, precision
        part = get_registry().resolve("head", model.spec.head.ref)
        self.task = part.capabilities.get("labels", "class")
        self.labels = model.spec.labels
        self.tokenizer = model.tokenizer
        self.max_length = int(model.spec.tokenizer.get("max_length") or model.spec.sizes["max_length"])

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        from .training.device import autocast

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), autocast(self.device, self.precision):
                out = self.model(torch.from_numpy(input_ids).to(self.device),
                                 torch.from_numpy(attention_mask).to(self.device))
            return out.float().cpu().numpy()
        finally:
            self.model.train(was_training)


def load_predictor(path: str | Path):
    """An export directory (model.onnx) runs on onnxruntime without torch; a model directory on torch."""
    path = Path(path)
    if (path / "model.onnx").is_file():
        from zoo.export.runtime import OnnxModel

        return OnnxModel(path)
    if not (path / "config.json").is_file():
        raise ZooError(f"{path}: not a model or export directory (no config.json or model.onnx)")
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
        index = order[start:start + batch_size]
        rows = [ids[i] for i in index]
        logits = predictor.logits(pad(rows, pad_value), pad([np.ones(len(r), dtype=np.int64) for r in rows], 0))
        for j, i in enumerate(index):
            out[i] = logits[j, : len(rows[j])] if logits.ndim == 3 else logits[j]
    return out  # type: ignore[return-value]


def decide(task: str, logits: np.ndarray) -> np.ndarray:
    """Logits -> predictions: class ids (class, token), 0/1 rows (multi), values (float)."""
    if task in ("class", "token"):
        return logits.argmax(axis=-1)
    if task == "multi":
        return (logits > 0).astype(np.int64)
    return logits


def label_list(predictor) -> list[str]:
    if predictor.labels:
        return list(predictor.labels)
    return []


def evaluate_rows(task: str, logits: list[np.ndarray], gold: list[Any], labels: list[str]) -> dict[str, Any]:
    """Metrics for per-row logits against encoded gold labels (see zoo.data.encode_labels), and the loss."""
    loss = {"loss": M.mean_loss(task, logits, gold)}
    if task == "class":
        return {**M.classification_metrics(gold, [int(decide(task, x)) for x in logits], labels), **loss}
    if task == "multi":
        return {**M.multilabel_metrics(np.stack(gold), np.stack([decide(task, x) for x in logits]), labels), **loss}
    if task == "float":
        return {**M.regression_metrics(np.stack(gold), np.stack(logits)), **loss}
    true = np.concatenate(gold)
    pred = np.concatenate([decide(task, x) for x in logits])
    return {**M.token_metrics(true, pred, labels), **loss}


def evaluate_table(predictor, table: Table, batch_size: int = 64) -> dict[str, Any]:
    """Tokenize a labelled table, predict, and score it with the task's metrics."""
    tokenizer = _require_tokenizer(predictor)
    task = predictor.task
    names = label_list(predictor) or None
    if task in ("class", "multi", "token") and not names:
        raise ZooError("the model has no label names; fine-tune it on labelled data first")
    if task == "token":
        gold = encode_labels(table, task, names)
        ids, token_gold = tokenize(tokenizer, table, predictor.max_length, gold)
        return evaluate_rows(task, row_logits(predictor, ids, batch_size), token_gold, names)
    ids, _ = tokenize(tokenizer, table, predictor.max_length)
    logits = row_logits(predictor, ids, batch_size)
    gold = encode_labels(table, task, names, int(logits[0].shape[-1]) if logits else 1)
    return evaluate_rows(task, logits, gold, names or [])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def predict_table(predictor, table: Table, batch_size: int = 64, top_k: int = 1) -> list[dict[str, Any]]:
    """One result per row: label and probability (class), labels over 0.5 (multi), values (float),
    or a label per word (token)."""
    tokenizer = _require_tokenizer(predictor)
    task = predictor.task
    names = label_list(predictor)
    word_rows = [t if isinstance(t, list) else t.split() for t in table.texts] if task == "token" else None
    if task == "token":
        table = Table(table.source, word_rows, None, None, table.lines)
    ids, _ = tokenize(tokenizer, table, predictor.max_length)
    logits = row_logits(predictor, ids, batch_size)
    name = (lambda i: names[i] if i < len(names) else str(i))
    results = []
    for row, x in enumerate(logits):
        text = table.texts[row]
        if task == "class":
            p = _softmax(x.astype(np.float64))
            best = np.argsort(-p)[:max(1, top_k)]
            result = {"text": text, "label": name(int(best[0])), "probability": float(p[best[0]])}
            if top_k > 1:
                result["top"] = [{"label": name(int(i)), "probability": float(p[i])} for i in best]
        elif task == "multi":
            p = 1 / (1 + np.exp(-x.astype(np.float64)))
            result = {"text": text, "labels": [name(i) for i in np.flatnonzero(p > 0.5)],
                      "probabilities": {name(i): float(v) for i, v in enumerate(p)}}
        elif task == "float":
            result = {"text": text, "value": float(x[0]) if len(x) == 1 else [float(v) for v in x]}
        else:
            enc = tokenizer.encode(word_rows[row], is_pretokenized=True)
            first: dict[int, int] = {}
            for position, word in enumerate(enc.word_ids[: len(x)]):
                if word is not None and word not in first:
                    first[word] = position
            tags = [name(int(x[first[w]].argmax())) if w in first else None for w in range(len(word_rows[row]))]
            result = {"text": " ".join(word_rows[row]), "words": word_rows[row], "labels": tags}
        results.append(result)
    return results


__all__ = ["IGNORE_INDEX", "ModelPredictor", "decide", "evaluate_rows", "evaluate_table", "load_predictor",
           "predict_table", "row_logits"]
