"""Single-label classification: one class per text (or text pair)."""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo import metrics as M
from zoo.tasks import Task, class_name, log_softmax, lookup, one_line, softmax


class Classification(Task):
    main_metric = "macro_f1"
    summary_metrics = ("accuracy", "macro_f1")
    uses_top_k = True

    def num_labels(self, table, names):
        if len(names or []) < 2:
            raise_one_label(table, names)
        return len(names)

    def target(self, label, index, num_labels, text, encoding, where) -> int:
        return lookup(index, class_name(label))

    def collate(self, targets: list[int]):
        import torch

        return torch.tensor(targets, dtype=torch.long)

    def evaluate(self, outputs, targets, names) -> dict[str, Any]:
        x = np.stack(outputs).astype(np.float64) if outputs else np.zeros((0, len(names or [])))
        gold = np.asarray(targets, dtype=np.int64)
        loss = float(-log_softmax(x)[np.arange(len(x)), gold].mean()) if len(x) else 0.0
        return {**M.classification_metrics(gold, x.argmax(-1) if len(x) else gold, names or []), "loss": loss}

    def predict(self, table, encodings, outputs, names, top_k=1) -> list[dict[str, Any]]:
        results = []
        for text, x in zip(table.texts, outputs):
            p = softmax(x.astype(np.float64))
            best = np.argsort(-p)[: max(1, top_k)]
            result = {"text": text, "label": name_of(names, best[0]), "probability": float(p[best[0]])}
            if top_k > 1:
                result["top"] = [{"label": name_of(names, i), "probability": float(p[i])} for i in best]
            results.append(result)
        return results

    def format_prediction(self, result: dict[str, Any]) -> str:
        extra = "".join(f"  {t['label']}={t['probability']:.3f}" for t in result.get("top", [])[1:])
        return f"{result['label']}\t{result['probability']:.4f}\t{one_line(result['text'])}{extra}"

    def format_report(self, metrics: dict[str, Any]) -> str:
        return M.format_report(metrics, self.summary_metrics)

    def synthetic_labels(self, batch, seq, num_labels, generator):
        import torch

        return torch.randint(0, num_labels, (batch,), generator=generator)


def name_of(names, i) -> str:
    i = int(i)
    return names[i] if names and i < len(names) else str(i)


def raise_one_label(table, names) -> None:
    from zoo.errors import ZooError

    raise ZooError(
        f"{table.source}: only one label ({names[0] if names else 'none'}) in the data; "
        "classification needs at least two"
    )
