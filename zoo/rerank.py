"""Rerank texts for a query with a cross-encoder (a ``rerank`` model directory, torch, or its export,
onnxruntime): one score per (query, text) pair, best first, as text-embeddings-inference's /rerank
answers. numpy, tokenizers and the predictor only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .data import Table
from .errors import ZooError
from .tasks import sigmoid

TASK = "rerank"


def require_rerank(predictor, source: str) -> None:
    if predictor.task.name != TASK:
        raise ZooError(
            f"{source}: a '{predictor.task.name}' model does not score (query, text) pairs; "
            "`zoo rerank` needs a rerank model (zoo build --head rerank)"
        )


def pairs_table(query: str, texts: Sequence[str], source: str = "request") -> Table:
    """The (query, text) pairs as a Table; an empty query or text is a ZooError."""
    if not isinstance(query, str) or not query.strip():
        raise ZooError("the query is empty")
    if not texts:
        raise ZooError("no texts to rerank")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ZooError(f"text {i} is empty")
    return Table(source, [query] * len(texts), list(texts), None, list(range(1, len(texts) + 1)))


def ranked(
    outputs: Sequence[np.ndarray], texts: Sequence[str] | None = None, raw: bool = False
) -> list[dict]:
    """[{"index", "score"(, "text")}] best first: the score is the sigmoid of the model's logit, or the
    logit itself with ``raw``; ties keep the texts' order."""
    logits = np.asarray([float(np.asarray(x).reshape(-1)[0]) for x in outputs], dtype=np.float64)
    scores = logits if raw else sigmoid(logits)
    order = np.argsort(-scores, kind="stable")
    return [
        {"index": int(i), "score": float(scores[i]), **({"text": texts[i]} if texts is not None else {})}
        for i in order
    ]


def rerank(
    predictor,
    query: str,
    texts: Sequence[str],
    *,
    raw_scores: bool = False,
    return_text: bool = False,
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """The texts ranked for the query by the predictor (a rerank model directory or export)."""
    from .inference import table_outputs

    _, outputs = table_outputs(predictor, pairs_table(query, texts), batch_size)
    return ranked(outputs, list(texts) if return_text else None, raw_scores)


__all__ = ["pairs_table", "ranked", "require_rerank", "rerank"]
