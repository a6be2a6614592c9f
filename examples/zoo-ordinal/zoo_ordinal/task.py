"""The ordinal task: one label per text from an ordered set (1 < 2 < ... < 5 stars, bad < ok < good).

With K ranks the head gives K-1 logits per text, logit k meaning "the rank is above k" (k = 0 .. K-2).
The prediction is the number of thresholds passed (logits > 0). Metrics are in rank steps (stars, for
1-5 stars): mean absolute error (the main metric, lower is better), quadratic-weighted kappa, accuracy.

Label order: numeric labels are sorted numerically. Names that are not all numbers have no order zoo
can guess, so they must come from the model: `zoo build --head ordinal --labels bad,ok,good` keeps them in
the order given (zoo.tasks.Task.label_names returns a model's own labels as they are).

numpy only: torch is imported inside ``collate`` and ``synthetic_labels``, so an ONNX export serves without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo import ZooError
from zoo import metrics as M
from zoo.tasks import Task, class_name, lookup, one_line, sigmoid


def ranks(logits: np.ndarray) -> np.ndarray:
    """(N, K-1) logits -> (N,) predicted ranks: how many thresholds each row passes."""
    return (np.asarray(logits) > 0).sum(axis=-1)


def above(gold: np.ndarray, thresholds: int) -> np.ndarray:
    """(N,) ranks -> (N, K-1) binary targets "rank > k"; rank 2 of 5 is [1, 1, 0, 0]."""
    return (np.asarray(gold)[:, None] > np.arange(thresholds)).astype(np.float64)


def cumulative_loss(logits: np.ndarray, gold: np.ndarray) -> float:
    """Binary cross-entropy summed over the K-1 thresholds, averaged over rows (what the head's loss is)."""
    x = np.asarray(logits, dtype=np.float64)
    y = above(gold, x.shape[-1])
    bce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    return float(bce.sum(axis=-1).mean()) if len(x) else 0.0


def quadratic_weighted_kappa(gold: np.ndarray, pred: np.ndarray, num_ranks: int) -> float:
    """Cohen's kappa with weights (i-j)²/(K-1)²: 1 is perfect, 0 is chance. Undefined (every row and
    every prediction one rank) counts as 0."""
    observed = M.confusion_matrix(gold, pred, num_ranks).astype(np.float64)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / max(observed.sum(), 1)
    i = np.arange(num_ranks)
    weights = (i[:, None] - i[None, :]) ** 2 / max(num_ranks - 1, 1) ** 2
    chance = float((weights * expected).sum())
    return 1.0 - float((weights * observed).sum()) / chance if chance > 0 else 0.0


def rank_probabilities(logits: np.ndarray) -> np.ndarray:
    """(K-1,) logits -> (K,) P(rank = r) = P(rank > r-1) - P(rank > r), clipped at 0 for a head whose
    thresholds are not ordered."""
    above_r = np.concatenate([[1.0], sigmoid(np.asarray(logits, dtype=np.float64)), [0.0]])
    return np.clip(above_r[:-1] - above_r[1:], 0.0, 1.0)


def is_number(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


class Ordinal(Task):
    main_metric = "mae"
    lower_is_better = True
    summary_metrics = ("mae", "qwk", "accuracy")

    def label_names(self, table, known):
        names = super().label_names(table, known)  # the model's own labels, in their order, when it has them
        if not known and not all(is_number(n) for n in names):
            raise ZooError(
                f"{table.source}: ordinal labels that are not all numbers ({', '.join(names[:6])}) "
                "need an order; name them lowest first when you build the model, e.g. "
                "`zoo build --head ordinal --labels bad,ok,good`"
            )
        return names

    def num_labels(self, table, names):
        if len(names or []) < 2:
            raise ZooError(
                f"{table.source}: only one rank ({names[0] if names else 'none'}) in the data; "
                "an ordinal task needs at least two"
            )
        return len(names)

    def target(self, label, index, num_labels, text, encoding, where) -> int:
        return lookup(index, class_name(label))  # the rank: the label's position in the ordered names

    def collate(self, targets: list[int]):
        import torch

        return torch.tensor(targets, dtype=torch.long)

    def output_shape(self, batch, seq, num_labels):
        return (batch, num_labels - 1)  # K ranks, K-1 thresholds

    def evaluate(self, outputs, targets, names) -> dict[str, Any]:
        x = np.stack(outputs).astype(np.float64) if outputs else np.zeros((0, max(len(names or []) - 1, 1)))
        gold, pred = np.asarray(targets, dtype=np.int64), ranks(x)
        num_ranks = x.shape[-1] + 1
        names = list(names or [str(r) for r in range(num_ranks)])
        return {
            **M.classification_metrics(gold, pred, names),
            "mae": float(np.abs(pred - gold).mean()) if len(gold) else 0.0,
            "qwk": quadratic_weighted_kappa(gold, pred, num_ranks),
            "loss": cumulative_loss(x, gold),
        }

    def predict(self, table, encodings, outputs, names, top_k=1) -> list[dict[str, Any]]:
        results = []
        for text, x in zip(table.texts, outputs):
            rank = int(ranks(x))
            results.append(
                {
                    "text": text,
                    "label": names[rank] if names else str(rank),
                    "rank": rank,
                    "probability": float(rank_probabilities(x)[rank]),
                }
            )
        return results

    def format_prediction(self, result):
        return f"{result['label']}\t{result['probability']:.4f}\t{one_line(result['text'])}"

    def format_report(self, metrics):
        return M.format_report(metrics, self.summary_metrics)

    def agreement(self, pairs):
        agree = total = 0
        for a, b, _ in pairs:
            same = ranks(a) == ranks(b)
            agree, total = agree + int(same.sum()), total + same.size
        return {"agreement": agree / max(total, 1), "compared": total, "rule": "predicted rank"}

    def synthetic_labels(self, batch, seq, num_labels, generator):
        import torch

        return torch.randint(0, num_labels, (batch,), generator=generator)
