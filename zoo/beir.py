"""A BEIR retrieval data set: ``corpus.jsonl`` ({"_id", "title", "text"}), ``queries.jsonl`` ({"_id",
"text"}) and ``qrels/<split>.tsv`` (query-id, corpus-id, score; a header line). Torch-free.
Every problem is a one-line ZooError naming the file and line."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .data import _jsonl_rows
from .errors import ZooError


@dataclass
class Beir:
    corpus: dict[str, str]  # document id -> "title text"
    queries: dict[str, str]  # query id -> text, only the queries the split judges
    qrels: dict[str, set[str]]  # query id -> the relevant document ids (score > 0)


def _jsonl(path: Path, what: str) -> dict[str, str]:
    if not path.is_file():
        raise ZooError(
            f"{path.parent}: no {path.name} (a BEIR directory holds corpus.jsonl, queries.jsonl "
            "and qrels/<split>.tsv)"
        )
    out: dict[str, str] = {}
    for row, number in _jsonl_rows(path, "utf-8-sig"):
        if "_id" not in row:
            raise ZooError(f"{path} line {number}: no '_id'")
        text = " ".join(str(row.get(k) or "").strip() for k in ("title", "text")).strip()
        if not text:
            raise ZooError(f"{path} line {number}: empty {what} '{row['_id']}'")
        out[str(row["_id"])] = text
    if not out:
        raise ZooError(f"{path}: no rows")
    return out


def read_beir(directory: str | Path, split: str = "test") -> Beir:
    directory = Path(directory)
    if not directory.is_dir():
        raise ZooError(f"{directory}: no such BEIR directory")
    qrels_path = directory / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        found = (
            sorted(p.stem for p in (directory / "qrels").glob("*.tsv"))
            if (directory / "qrels").is_dir()
            else []
        )
        raise ZooError(f"{directory}: no qrels/{split}.tsv (splits: {', '.join(found) or 'none'})")
    corpus, queries = (
        _jsonl(directory / "corpus.jsonl", "document"),
        _jsonl(directory / "queries.jsonl", "query"),
    )
    qrels: dict[str, set[str]] = {}
    with open(qrels_path, encoding="utf-8", newline="") as f:
        for number, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
            if not row or (number == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid")):
                continue
            if len(row) < 2:
                raise ZooError(f"{qrels_path} line {number}: expected query-id, corpus-id[, score]")
            qid, cid = row[0].strip(), row[1].strip()
            if qid not in queries:
                raise ZooError(f"{qrels_path} line {number}: query '{qid}' is not in queries.jsonl")
            if cid not in corpus:
                raise ZooError(f"{qrels_path} line {number}: document '{cid}' is not in corpus.jsonl")
            try:
                score = float(row[2]) if len(row) > 2 else 1.0
            except ValueError:
                raise ZooError(f"{qrels_path} line {number}: score '{row[2]}' is not a number") from None
            if score > 0:
                qrels.setdefault(qid, set()).add(cid)
    if not qrels:
        raise ZooError(f"{qrels_path}: no relevant (query, document) pairs")
    return Beir(corpus, {q: queries[q] for q in qrels}, qrels)


__all__ = ["Beir", "read_beir"]
