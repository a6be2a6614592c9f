"""Metrics in numpy (no torch, no sklearn) for task plugins to build on. Each ``*_metrics`` returns a
JSON-ready dict; which of them a task reports, and which picks the best epoch, is the task's choice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .constants import IGNORE_INDEX


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts; row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    return precision, recall, _safe_div(2 * precision * recall, precision + recall)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 (over classes present in truth or predictions), per-class P/R/F1, confusion."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(matrix)
    precision, recall, f1 = _prf(tp, matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp)
    seen = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    return {
        "n": len(y_true),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(matrix[i].sum()),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": matrix.tolist(),
        "labels": list(labels),
    }


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """(N, L) 0/1 arrays: exact-match accuracy, micro/macro F1, per-label P/R/F1."""
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp = (y_true & y_pred).sum(axis=0)
    fp = (~y_true & y_pred).sum(axis=0)
    fn = (y_true & ~y_pred).sum(axis=0)
    precision, recall, f1 = _prf(tp, fp, fn)
    _, _, micro = _prf(tp.sum(), fp.sum(), fn.sum())
    return {
        "n": len(y_true),
        "exact_match": float((y_true == y_pred).all(axis=1).mean()) if len(y_true) else 0.0,
        "label_accuracy": float((y_true == y_pred).mean()) if y_true.size else 0.0,
        "micro_f1": float(micro),
        "macro_f1": float(f1.mean()) if len(f1) else 0.0,
        "per_label": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(y_true[:, i].sum()),
            }
            for i, label in enumerate(labels)
        },
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """MSE, RMSE, MAE, R² (1 - SS_res/SS_tot, averaged over outputs) and Pearson r."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(y_true.shape)
    err = y_pred - y_true
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    r2 = 1.0 - _safe_div((err**2).sum(axis=0), ss_tot)
    tc, pc = y_true - y_true.mean(axis=0), y_pred - y_pred.mean(axis=0)
    pearson = _safe_div((tc * pc).sum(axis=0), np.sqrt((tc**2).sum(axis=0) * (pc**2).sum(axis=0)))
    mse = float((err**2).mean()) if err.size else 0.0
    return {
        "n": len(y_true),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.abs(err).mean()) if err.size else 0.0,
        "r2": float(r2.mean()),
        "pearson": float(pearson.mean()),
    }


def token_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Per-token classification: positions labelled IGNORE_INDEX (padding, sub-words) are skipped."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    keep = y_true != IGNORE_INDEX
    out = classification_metrics(y_true[keep], y_pred[keep], labels)
    out["tokens"] = out.pop("n")
    return out


def format_report(metrics: dict[str, Any], headline: Sequence[str]) -> str:
    """A plain-text report: the ``headline`` numbers, then a per-class table and the confusion matrix
    when the metrics have them."""
    lines = [f"{k:<12} {metrics[k]:.4f}" for k in headline if k in metrics]
    if not (metrics.get("per_class") or metrics.get("per_label") or "confusion_matrix" in metrics):
        return "\n".join(lines)
    table = metrics.get("per_class") or metrics.get("per_label") or {}
    width = max([len("label"), *map(len, table)])
    lines.append("")
    lines.append(f"{'label':<{width}}  precision  recall  f1      support")
    for label, row in table.items():
        lines.append(
            f"{label:<{width}}  {row['precision']:<9.4f}  {row['recall']:<6.4f}  {row['f1']:<6.4f}  "
            f"{row['support']}"
        )
    if "confusion_matrix" in metrics:
        labels = metrics["labels"]
        cell = max(
            5, *(len(str(x)) for r in metrics["confusion_matrix"] for x in r), *(len(x) for x in labels)
        )
        lines.append("")
        lines.append("confusion matrix (rows: true, columns: predicted)")
        lines.append(" " * (width + 2) + " ".join(f"{x:>{cell}}" for x in labels))
        for label, row in zip(labels, metrics["confusion_matrix"]):
            lines.append(f"{label:<{width}}  " + " ".join(f"{x:>{cell}}" for x in row))
    return "\n".join(lines)
