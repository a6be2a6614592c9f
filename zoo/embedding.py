"""Embed texts with a model directory (torch) or an export (onnxruntime): batched by length, with an
optional prefix ("query: ") and normalisation. numpy, tokenizers and the predictor only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .data import Table
from .errors import ZooError
from .retrieval import unit

OUTPUT = "sentence_embedding"  # the output an embedding task names (Task.output_names)


def require_embeddings(predictor, source: str) -> None:
    if OUTPUT not in predictor.task.output_names:
        raise ZooError(
            f"{source}: a '{predictor.task.name}' model gives {predictor.task.output_names[0]}, not "
            "embeddings; `zoo embed` needs an embedding model (zoo build --head embedding)"
        )


def set_normalize(predictor, normalize: bool | None, source: str) -> None:
    """--no-normalize on a model that normalises inside: a model directory turns it off in its head; an
    export's graph cannot, so that is a one-line error."""
    if normalize is not False:
        return
    head = getattr(getattr(predictor, "model", None), "head", None)
    if head is not None and hasattr(head, "normalize"):
        head.normalize = False
        return
    options = (getattr(predictor, "manifest", {}) or {}).get("head_options") or {}
    if options.get("normalize"):
        raise ZooError(
            f"{source}: this export normalises inside its graph; --no-normalize needs the model "
            "directory it was exported from"
        )


def embed_texts(
    predictor, texts: Sequence[str], *, batch_size: int = 32, prefix: str = "", normalize: bool | None = None
) -> np.ndarray:
    """(len(texts), dim) float32 vectors; ``normalize`` True scales each to length 1."""
    from .inference import table_outputs

    table = Table("texts", [prefix + t for t in texts], None, None, list(range(1, len(texts) + 1)))
    _, rows = table_outputs(predictor, table, batch_size)
    vectors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), dtype=np.float32)
    return unit(vectors).astype(np.float32) if normalize and len(vectors) else vectors


def evaluate_beir(
    predictor, directory, split: str = "test", *, batch_size: int = 32, prefix: str = "", chunk: int = 256
) -> dict:
    """Every judged query of a BEIR split ranked against the whole corpus by cosine: mrr@10, ndcg@10,
    recall@1, recall@10, map@100 (and the counts)."""
    from .beir import read_beir
    from .retrieval import rank_metrics

    data = read_beir(directory, split)
    doc_ids = list(data.corpus)
    docs = unit(embed_texts(predictor, [data.corpus[d] for d in doc_ids], batch_size=batch_size))
    column = {d: i for i, d in enumerate(doc_ids)}
    qids = list(data.queries)
    queries = unit(embed_texts(predictor, [prefix + data.queries[q] for q in qids], batch_size=batch_size))
    sums: dict[str, float] = {}
    for start in range(0, len(qids), chunk):  # (chunk, corpus) scores at a time
        part = qids[start : start + chunk]
        metrics = rank_metrics(
            queries[start : start + chunk] @ docs.T, [{column[d] for d in data.qrels[q]} for q in part]
        )
        for k, v in metrics.items():
            if k != "queries":
                sums[k] = sums.get(k, 0.0) + v * len(part)
    return {**{k: v / len(qids) for k, v in sums.items()}, "queries": len(qids), "documents": len(doc_ids)}


def embed_tables(predictor, tables: Iterable[Table], **options) -> Iterable[tuple[Table, np.ndarray]]:
    for table in tables:
        if any(not str(t).strip() for t in table.texts):
            line = table.lines[next(i for i, t in enumerate(table.texts) if not str(t).strip())]
            raise ZooError(f"{table.source} line {line}: empty text")
        yield table, embed_texts(predictor, [str(t) for t in table.texts], **options)


__all__ = ["embed_tables", "embed_texts", "evaluate_beir", "require_embeddings", "set_normalize"]
