"""Ranking metrics for embeddings (numpy only): every query scored against every candidate by cosine.

The names and definitions are those of sentence-transformers' InformationRetrievalEvaluator, with binary
relevance: ``mrr@10``, ``ndcg@10``, ``recall@1``, ``recall@10``, ``map@100``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

METRICS = ("mrr@10", "ndcg@10", "recall@1", "recall@10", "map@100")
MRR_AT, NDCG_AT, RECALL_AT, MAP_AT = 10, 10, (1, 10), 100


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_scores(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(Q, D), (C, D) -> (Q, C) cosine similarities."""
    return unit(queries) @ unit(candidates).T


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(Q, C) -> (Q, min(k, C)) candidate indices, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    part = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k]
        if k < scores.shape[1]
        else np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    )
    order = np.lexsort((part, -np.take_along_axis(scores, part, 1)), axis=1)
    return np.take_along_axis(part, order, 1)


def rank_metrics(scores: np.ndarray, relevant: Sequence[Iterable[int]]) -> dict[str, float]:
    """Mean over queries of each metric; ``relevant[q]`` holds the candidate indices relevant to query q."""
    sets = [set(r) for r in relevant]
    if len(sets) != len(scores):
        raise ValueError(f"{len(scores)} queries but {len(sets)} relevance sets")
    if not len(scores):
        return {**dict.fromkeys(METRICS, 0.0), "queries": 0}
    best = top_k(scores, max(MRR_AT, NDCG_AT, MAP_AT, *RECALL_AT))
    sums = dict.fromkeys(METRICS, 0.0)
    for ranked, rel in zip(best.tolist(), sets):
        hits = [c in rel for c in ranked]
        n = max(len(rel), 1)
        first = next((i for i, h in enumerate(hits[:MRR_AT]) if h), None)
        sums["mrr@10"] += 0.0 if first is None else 1.0 / (first + 1)
        dcg = sum(1.0 / np.log2(i + 2) for i, h in enumerate(hits[:NDCG_AT]) if h)
        idcg = sum(1.0 / np.log2(i + 2) for i in range(min(n, NDCG_AT)))
        sums["ndcg@10"] += dcg / idcg
        for k in RECALL_AT:
            sums[f"recall@{k}"] += sum(hits[:k]) / n
        found, precision_sum = 0, 0.0
        for i, h in enumerate(hits[:MAP_AT]):
            if h:
                found += 1
                precision_sum += found / (i + 1)
        sums["map@100"] += precision_sum / min(n, MAP_AT)
    return {**{m: float(v / len(scores)) for m, v in sums.items()}, "queries": len(scores)}


def pair_retrieval(
    queries: np.ndarray,
    positives: np.ndarray,
    query_keys: Sequence[object] | None = None,
    positive_keys: Sequence[object] | None = None,
) -> dict[str, float]:
    """One row per (query, positive) pair: each distinct query ranked against every distinct positive, the
    positives of its rows being relevant. Keys (the texts) say which rows are the same query or positive;
    without them every row is distinct."""
    qkeys = list(query_keys) if query_keys is not None else list(range(len(queries)))
    pkeys = list(positive_keys) if positive_keys is not None else list(range(len(positives)))
    qfirst, pfirst = distinct(qkeys), distinct(pkeys)
    relevant: dict[int, set[int]] = {}
    for q, p in zip(qkeys, pkeys):
        relevant.setdefault(qfirst[q], set()).add(pfirst[p])
    qrows, prows = list(first_rows(qkeys).values()), list(first_rows(pkeys).values())
    scores = cosine_scores(np.asarray(queries)[qrows], np.asarray(positives)[prows])
    return rank_metrics(scores, [relevant[i] for i in range(len(qrows))])


def sts_metrics(a: np.ndarray, b: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Scored pairs: Pearson and Spearman correlation of cosine(a_i, b_i) with the gold scores (the names
    of sentence-transformers' EmbeddingSimilarityEvaluator)."""
    cosine = np.sum(unit(a) * unit(b), axis=-1)
    return {
        "pearson_cosine": pearson(cosine, scores),
        "spearman_cosine": pearson(ranks(cosine), ranks(scores)),
        "pairs": len(scores),
    }


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64) - np.mean(x), np.asarray(y, dtype=np.float64) - np.mean(y)
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.r_[0, np.flatnonzero(sorted_x[1:] != sorted_x[:-1]) + 1]
    ends = np.r_[starts[1:], len(x)]
    out = np.empty(len(x), dtype=np.float64)
    for s, e in zip(starts, ends):
        out[order[s:e]] = (s + e + 1) / 2
    return out


def distinct(keys: Sequence[object]) -> dict[object, int]:
    """key -> its index among the distinct keys, in order of first appearance."""
    out: dict[object, int] = {}
    for key in keys:
        out.setdefault(key, len(out))
    return out


def first_rows(keys: Sequence[object]) -> dict[object, int]:
    out: dict[object, int] = {}
    for row, key in enumerate(keys):
        out.setdefault(key, row)
    return out


RERANK_METRICS = ("map", "mrr@10", "ndcg@10")


def rerank_metrics(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[float] | np.ndarray,
    groups: Sequence[object],
    at_k: int = 10,
) -> dict[str, float]:
    """Each query's candidates (the rows sharing a ``groups`` key) ranked by score: ``map`` (average
    precision over all of them), ``mrr@10`` and ``ndcg@10`` (gain = the label, so graded labels count as
    graded), averaged over queries; a query with no relevant candidate (no label above 0) counts 0. These
    are sentence-transformers' CrossEncoderRerankingEvaluator's metrics, with sklearn's average precision
    and NDCG (ties in score taken in a fixed order rather than averaged)."""
    score, label = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    rows: dict[object, list[int]] = {}
    for i, key in enumerate(groups):
        rows.setdefault(key, []).append(i)
    sums = dict.fromkeys(RERANK_METRICS, 0.0)
    discounts = 1.0 / np.log2(np.arange(2, at_k + 2))
    for index in rows.values():
        y, s = label[index], score[index]
        relevant = y > 0
        if not relevant.any():
            continue
        order = np.argsort(-s, kind="stable")
        top = order[:at_k]
        first = np.flatnonzero(relevant[top])
        sums[f"mrr@{at_k}"] += 1.0 / (first[0] + 1) if first.size else 0.0
        ideal = np.sort(y)[::-1][:at_k]
        sums[f"ndcg@{at_k}"] += float(
            (y[top] * discounts[: len(top)]).sum() / (ideal * discounts[: len(ideal)]).sum()
        )
        sums["map"] += average_precision(relevant[order], s[order])
    n = max(len(rows), 1)
    return {**{k: float(v / n) for k, v in sums.items()}, "queries": len(rows)}


def average_precision(hits: np.ndarray, ranked_scores: np.ndarray) -> float:
    """sklearn's average_precision_score of candidates sorted by descending score: precision at each
    distinct score threshold, weighted by the recall it adds (tied scores form one threshold)."""
    ends = np.r_[np.flatnonzero(np.diff(ranked_scores)), len(hits) - 1]  # last row of each tie group
    found = np.cumsum(hits)[ends]
    precision, recall = found / (ends + 1), found / max(int(hits.sum()), 1)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


__all__ = [
    "METRICS",
    "RERANK_METRICS",
    "cosine_scores",
    "pair_retrieval",
    "pearson",
    "rank_metrics",
    "ranks",
    "rerank_metrics",
    "sts_metrics",
    "top_k",
    "unit",
]
