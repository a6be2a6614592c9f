"""Regression: one or more real numbers per text."""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo import metrics as M
from zoo.tasks import Task, one_line

SPREAD_SHARE = 0.05  # int8 agrees with fp32 on a row when every value is within 5% of fp32's spread


def numbers(label: Any) -> list[float]:
    values = label if isinstance(label, list) else str(label).replace(";", ",").split(",")
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"label {label!r} is not a number") from None


class Regression(Task):
    named_labels = False
    main_metric = "mse"
    lower_is_better = True
    summary_metrics = ("mse", "rmse", "mae", "r2", "pearson")

    def num_labels(self, table, names):
        first = (table.labels or [0])[0]
        return len(first) if isinstance(first, list) else len(str(first).replace(";", ",").split(","))

    def target(self, label, index, num_labels, text, encoding, where) -> np.ndarray:
        row = np.asarray(numbers(label), dtype=np.float32)
        if len(row) != num_labels:
            raise ValueError(f"{len(row)} numbers in the label but the model predicts {num_labels}")
        return row

    def collate(self, targets):
        import torch

        return torch.from_numpy(np.stack(targets).astype(np.float32))

    def evaluate(self, outputs, targets, names) -> dict[str, Any]:
        x, y = np.stack(outputs).astype(np.float64), np.stack(targets).astype(np.float64)
        return {**M.regression_metrics(y, x), "loss": float(((x.reshape(y.shape) - y) ** 2).mean())}

    def predict(self, table, encodings, outputs, names, top_k=1) -> list[dict[str, Any]]:
        return [
            {"text": text, "value": float(x[0]) if len(x) == 1 else [float(v) for v in x]}
            for text, x in zip(table.texts, outputs)
        ]

    def format_prediction(self, result):
        value = result["value"]
        shown = f"{value:.4f}" if isinstance(value, float) else ",".join(f"{v:.4f}" for v in value)
        return f"{shown}\t{one_line(result['text'])}"

    def agreement(self, pairs):
        a, b = (
            zip(*[(x.reshape(len(x), -1), y.reshape(len(y), -1)) for x, y, _ in pairs]) if pairs else ((), ())
        )
        fp32, int8 = np.concatenate(a), np.concatenate(b)
        tolerance = SPREAD_SHARE * max(float(fp32.max() - fp32.min()), 1e-6)
        close = np.abs(fp32 - int8).max(axis=1) <= tolerance
        return {
            "agreement": float(close.mean()),
            "compared": int(close.size),
            "rule": f"within {SPREAD_SHARE:.0%} of the fp32 spread",
        }

    def synthetic_labels(self, batch, seq, num_labels, generator):
        import torch

        return torch.randn((batch,) if num_labels == 1 else (batch, num_labels), generator=generator)
