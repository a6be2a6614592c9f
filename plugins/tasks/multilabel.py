"""Multi-label classification: any number of labels per text, each a yes/no."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from zoo import metrics as M
from zoo.tasks import Task, class_name, lookup, one_line, sigmoid

from .classification import name_of


def split_labels(value: Any) -> list[str]:
    """A list, a JSON list, or one string split on | ; or , ('' and [] are no labels)."""
    if isinstance(value, list):
        return [class_name(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return [class_name(v) for v in json.loads(text)]
        except (json.JSONDecodeError, TypeError):
            raise ValueError(f"label {text!r} is not a JSON list") from None
    for sep in ("|", ";", ","):
        if sep in text:
            return [p.strip() for p in text.split(sep) if p.strip()]
    return [text] if text else []


class MultiLabel(Task):
    main_metric = "micro_f1"
    summary_metrics = ("exact_match", "micro_f1", "macro_f1")
    allows_empty_labels = True  # a row with no labels is data, not a mistake

    def names_in(self, label):
        return split_labels(label)

    def target(self, label, index, num_labels, text, encoding, where) -> np.ndarray:
        row = np.zeros(len(index), dtype=np.float32)
        for name in split_labels(label):
            row[lookup(index, name)] = 1.0
        return row

    def collate(self, targets):
        import torch

        return torch.from_numpy(np.stack(targets).astype(np.float32))

    def evaluate(self, outputs, targets, names) -> dict[str, Any]:
        x, y = np.stack(outputs).astype(np.float64), np.stack(targets).astype(np.float64)
        loss = float((np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))).mean())
        return {**M.multilabel_metrics(y, (x > 0).astype(np.int64), names or []), "loss": loss}

    def predict(self, table, encodings, outputs, names, top_k=1) -> list[dict[str, Any]]:
        results = []
        for text, x in zip(table.texts, outputs):
            p = sigmoid(x.astype(np.float64))
            results.append(
                {
                    "text": text,
                    "labels": [name_of(names, i) for i in np.flatnonzero(p > 0.5)],
                    "probabilities": {name_of(names, i): float(v) for i, v in enumerate(p)},
                }
            )
        return results

    def format_prediction(self, result):
        return f"{','.join(result['labels']) or '-'}\t{one_line(result['text'])}"

    def format_report(self, metrics):
        return M.format_report(metrics, self.summary_metrics)

    def agreement(self, pairs):
        agree = total = 0
        for a, b, _ in pairs:
            same = (a > 0) == (b > 0)
            agree, total = agree + int(same.sum()), total + same.size
        return {"agreement": agree / max(total, 1), "compared": total, "rule": "sigmoid > 0.5 per label"}

    def synthetic_labels(self, batch, seq, num_labels, generator):
        import torch

        return torch.randint(0, 2, (batch, num_labels), generator=generator).float()
