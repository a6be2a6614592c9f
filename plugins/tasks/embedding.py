"""Sentence embeddings: a model's output is one vector per text, compared by cosine similarity.

Targets are columns: a training row (anchor, positive[, negative]) becomes several sequences, and each
sequence's target is the column it came from (0 anchor, 1 positive, 2 hard negative). The head's loss
ranks each anchor's positive against every other candidate in the batch; evaluation ranks every anchor
against every distinct positive (zoo.retrieval).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from zoo import retrieval as R
from zoo.tasks import Task, one_line

AGREEMENT_COSINE = 0.99  # an int8 vector agrees with fp32 when their cosine is at least this
SCALE = 20.0             # the ranking loss's scale (cosine x 20), as in the head


class Embedding(Task):
    named_labels = False
    main_metric = "ndcg@10"
    summary_metrics = R.METRICS
    output_names = ("sentence_embedding",)

    def num_labels(self, table, names):
        return None  # the head decides the width of its vectors

    # ---- outputs ----------------------------------------------------------------------------------
    def evaluate(self, outputs, targets, names) -> dict[str, Any]:
        """Anchors (column 0) ranked against the positives (column 1), the i-th anchor's positive being
        the i-th; loss is the ranking loss of the whole set as one batch."""
        columns = np.asarray(targets, dtype=np.int64).reshape(-1)
        x = np.stack(outputs).astype(np.float64) if len(outputs) else np.zeros((0, 1))
        anchors, positives, candidates = x[columns == 0], x[columns == 1], x[columns != 0]
        n = min(len(anchors), len(positives))
        metrics = R.pair_retrieval(anchors[:n], positives[:n])
        scores = SCALE * R.cosine_scores(anchors[:n], candidates) if n else np.zeros((0, 0))
        if n:
            scores = scores - scores.max(axis=1, keepdims=True)
            loss = float((np.log(np.exp(scores).sum(axis=1)) - scores[np.arange(n), np.arange(n)]).mean())
        else:
            loss = 0.0
        return {**metrics, "loss": loss}

    def predict(self, table, encodings, outputs, names, top_k=1) -> list[dict[str, Any]]:
        return [{"text": text, "embedding": [float(v) for v in x]} for text, x in zip(table.texts, outputs)]

    def format_prediction(self, result: dict[str, Any]) -> str:
        vector = result["embedding"]
        shown = " ".join(f"{v:.4f}" for v in vector[:4]) + (" ..." if len(vector) > 4 else "")
        return f"[{shown}] ({len(vector)} dims)\t{one_line(result['text'])}"

    def agreement(self, pairs) -> dict[str, Any]:
        cosines = [np.sum(R.unit(a.reshape(len(a), -1)) * R.unit(b.reshape(len(b), -1)), axis=1) for a, b, _ in pairs]
        c = np.concatenate(cosines) if cosines else np.zeros(0)
        return {"agreement": float((c >= AGREEMENT_COSINE - 1e-9).mean()) if c.size else 1.0, "compared": int(c.size),
                "rule": f"cosine with fp32 >= {AGREEMENT_COSINE}",
                "mean_cosine": float(c.mean()) if c.size else 1.0, "worst_cosine": float(c.min()) if c.size else 1.0}

    # ---- batches and the conformance kit ----------------------------------------------------------
    def collate(self, targets):
        import torch

        return torch.tensor(np.asarray(targets, dtype=np.int64).reshape(-1))

    def output_shape(self, batch, seq, num_labels):
        return (batch, None)  # the width is the head's (d_model, or its dense projection)

    def synthetic_labels(self, batch, seq, num_labels, generator):
        import torch

        if batch % 2 == 0:  # batch/2 (anchor, positive) pairs
            return torch.arange(batch) // (batch // 2)
        return torch.arange(batch)  # one anchor, one positive and batch-2 hard negatives
