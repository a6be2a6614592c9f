"""Reranking (cross-encoder): one relevance score per (query, text) pair.

A training or evaluation file has ``query,text,label`` rows (label 0/1, or a graded relevance in [0, 1]),
or ``query,positive,negative`` triples, read as a (query, positive, 1) and a (query, negative, 0) row each
(a pair seen twice is kept once). Evaluation groups the rows by query and ranks each query's candidates
by score: ``map``, ``mrr@10``, ``ndcg@10`` as sentence-transformers' CrossEncoderRerankingEvaluator
computes them, plus ``accuracy`` at a score of 0.5 and the loss (binary cross-entropy). The model's output
is a logit; the score is its sigmoid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo import retrieval as R
from zoo.errors import ZooError
from zoo.tasks import Task, one_line, sigmoid

AGREEMENT_SCORE = 0.05  # an int8 score agrees with fp32 when within this much of it (scores are in [0, 1])
ROLES = {
    "query": ("query", "question", "anchor", "sentence1"),
    "text": ("text", "document", "passage", "answer", "sentence2", "pair"),
    "label": ("label", "score", "relevance"),
    "positive": ("positive",),
    "negative": ("negative", "hard_negative", "negative_1"),
}


class Rerank(Task):
    named_labels = False
    labelled_int8 = True
    single_texts = False
    num_outputs = 1
    main_metric = "ndcg@10"
    summary_metrics = (*R.RERANK_METRICS, "accuracy")

    # ---- data -------------------------------------------------------------------------------------
    def read(self, path, *, text_column=None, label_column=None, pair_column=None, encoding=None):
        """query,text,label rows or query,positive,negative triples. --text-column names the query
        column, --pair-column the text (or positive) column, --label-column the label."""
        from zoo.data import Table, read_columns

        roles = dict(ROLES)
        given = {"query": text_column, "label": label_column, "text": pair_column}
        cells, lines = read_columns(
            path,
            roles,
            optional=("text", "label", "positive", "negative"),
            numeric=("label",),
            given=given,
            encoding=encoding,
        )
        queries = cells["query"] or []
        if cells["text"] is not None and cells["label"] is not None:
            for label, line in zip(cells["label"], lines):
                if not 0 <= label <= 1:
                    raise ZooError(f"{path} line {line}: a rerank label must be in [0, 1], got {label:g}")
            return Table(str(path), queries, cells["text"], cells["label"], lines)
        if cells["positive"] is not None and cells["negative"] is not None:
            seen: set[tuple[str, str]] = set()
            rows = []
            for q, pos, neg, line in zip(queries, cells["positive"], cells["negative"], lines):
                for text, label in ((pos, 1.0), (neg, 0.0)):
                    if (q, text) not in seen:
                        seen.add((q, text))
                        rows.append((q, text, label, line))
            q, t, labels, where = (list(c) for c in zip(*rows))
            return Table(str(path), q, t, labels, where)
        raise ZooError(
            f"{path}: a rerank file needs query,text,label columns or query,positive,negative columns "
            f"(found {', '.join(k for k, v in cells.items() if v is not None)})"
        )

    # ---- labels -----------------------------------------------------------------------------------
    def targets(self, table, names, num_labels, encodings):
        """Per row: (query, label); the query groups rows for the ranking metrics."""
        return [(query, float(label)) for query, label in zip(table.texts, table.labels or [])]

    def collate(self, targets):
        import torch

        labels = [t[1] if isinstance(t, tuple) else t for t in targets]
        return torch.tensor(np.asarray(labels, dtype=np.float32).reshape(-1))

    # ---- outputs ----------------------------------------------------------------------------------
    def evaluate(self, outputs, targets, names) -> dict[str, Any]:
        items = [t if isinstance(t, tuple) else (0, float(np.asarray(t).reshape(-1)[0])) for t in targets]
        logits = np.asarray([float(np.asarray(x).reshape(-1)[0]) for x in outputs], dtype=np.float64)
        labels = np.asarray([t[1] for t in items], dtype=np.float64)
        metrics = R.rerank_metrics(logits, labels, [t[0] for t in items])
        if not len(logits):
            return {**metrics, "accuracy": 0.0, "loss": 0.0}
        # binary cross-entropy with logits, stable: max(x, 0) - x*y + log(1 + exp(-|x|))
        loss = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
        accuracy = ((logits >= 0) == (labels >= 0.5)).mean()
        return {**metrics, "accuracy": float(accuracy), "loss": float(loss.mean())}

    def predict(self, table, encodings, outputs, names, top_k=1) -> list[dict[str, Any]]:
        return [
            {"query": query, "text": text, "score": float(sigmoid(np.float64(np.asarray(x).reshape(-1)[0])))}
            for query, text, x in zip(table.texts, table.pairs or [""] * len(table), outputs)
        ]

    def format_prediction(self, result: dict[str, Any]) -> str:
        return f"{result['score']:.4f}\t{one_line(result['query'])}\t{one_line(result['text'])}"

    def format_report(self, metrics):
        shown = [k for k in (*self.summary_metrics, "loss") if k in metrics]
        return "\n".join(f"{k:<12} {metrics[k]:.4f}" for k in shown)

    def agreement(self, pairs) -> dict[str, Any]:
        return self.labelled_agreement(pairs, None)

    def labelled_agreement(self, pairs, targets) -> dict[str, Any]:
        """int8 against fp32. With labelled (query, text) rows (``targets``: (query, label) per row), both
        rank each query's candidates, and the agreement is 1 - the drop in ndcg@10 from fp32 to int8 (so
        --min-agreement 0.99 allows a drop of 0.01). Without: the fraction of scores (sigmoid) within
        AGREEMENT_SCORE of fp32's. Either way the report gives the largest score difference."""
        pairs = list(pairs)
        a = np.concatenate([x.reshape(-1) for x, _, _ in pairs]) if pairs else np.zeros(0)
        b = np.concatenate([y.reshape(-1) for _, y, _ in pairs]) if pairs else np.zeros(0)
        d = np.abs(sigmoid(a.astype(np.float64)) - sigmoid(b.astype(np.float64)))
        close = float((d <= AGREEMENT_SCORE).mean()) if d.size else 1.0
        common = {"compared": int(d.size), "worst_score_diff": float(d.max()) if d.size else 0.0}
        if targets is None:
            return {"agreement": close, "rule": f"score within {AGREEMENT_SCORE} of fp32", **common}
        labels, groups = [float(t[1]) for t in targets], [t[0] for t in targets]
        fp32 = R.rerank_metrics(a, labels, groups)["ndcg@10"]
        int8 = R.rerank_metrics(b, labels, groups)["ndcg@10"]
        drop = fp32 - int8
        return {
            "agreement": 1.0 - max(drop, 0.0),
            "rule": f"1 - ndcg@10 drop over {len(set(groups))} labelled queries' candidates",
            **common,
            "ndcg@10_fp32": fp32,
            "ndcg@10_int8": int8,
            "ndcg@10_drop": drop,
            "labelled": True,
            "scores_within": close,
            "detail": f"ndcg@10 fp32 {fp32:.4f}, int8 {int8:.4f} (drop {drop:.4f}); "
            f"{close:.1%} of scores within {AGREEMENT_SCORE} of fp32",
        }

    # ---- the conformance kit ----------------------------------------------------------------------
    def synthetic_labels(self, batch, seq, num_labels, generator):
        import torch

        return torch.randint(0, 2, (batch,), generator=generator).float()
