"""A real retrieval set derived from installed documentation: numpy's docstrings, summary -> the rest.

Each public numpy function (numpy, numpy.linalg, numpy.fft, numpy.random, numpy.ma, numpy.char,
numpy.polynomial.polynomial) with a numpydoc docstring gives one pair: the query is its one-paragraph summary
("Return the cumulative sum of the elements along a given axis."), the document its Parameters, Returns and
Notes sections (the name, signature, See Also and Examples are dropped, so the name cannot give the answer
away). Aliases with the same docstring count once. ``write_splits`` shuffles the functions with a seed and
writes train.csv (anchor,positive), an optional eval.csv and test.csv (query,positive); evaluation ranks
every test query against every test document. numpy is BSD-licensed; the text is its documentation.
numpy and the standard library only (`zoo demo --task retrieval` and bench/ use it).

    python -m zoo.numpy_docs -o data/numpy-docs        # 70/30 train/test, as bench/ and the README use
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib
import inspect
import random
import re
from pathlib import Path

MODULES = (
    "numpy",
    "numpy.linalg",
    "numpy.fft",
    "numpy.random",
    "numpy.ma",
    "numpy.char",
    "numpy.polynomial.polynomial",
)
KEEP = ("Parameters", "Returns", "Notes")
MAX_DOC_CHARS = 1500


def sections(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {section title: text}) of a numpydoc docstring."""
    lines = doc.splitlines()
    out: dict[str, list[str]] = {"": []}
    title = ""
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()) and lines[i].strip():
            title = lines[i].strip()
            out[title] = []
            i += 2
            continue
        out[title].append(lines[i])
        i += 1
    head = "\n".join(out.pop("")).strip()
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", head) if p.strip()]
    summary = " ".join(paragraphs[0].split()) if paragraphs else ""
    return summary, {k: "\n".join(v).strip() for k, v in out.items()}


@functools.cache
def pairs() -> list[tuple[str, str, str]]:
    """(function name, summary, document) per documented numpy function, in a fixed order."""
    seen_docs, seen_summaries, rows = set(), set(), []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in sorted(dir(module)):
            obj = getattr(module, name)
            if name.startswith("_") or not callable(obj) or inspect.isclass(obj):
                continue
            doc = inspect.getdoc(obj) or ""
            summary, parts = sections(doc)
            if summary.endswith(")") and "(" in summary.split(" ")[0]:  # a signature line: skip past it
                continue
            body = " ".join(" ".join(parts[k].split()) for k in KEEP if parts.get(k))
            if len(summary) < 20 or len(body) < 80 or doc in seen_docs or summary in seen_summaries:
                continue
            seen_docs.add(doc)
            seen_summaries.add(summary)
            rows.append((f"{module_name}.{name}", summary, body[:MAX_DOC_CHARS]))
    return rows


def write_splits(
    directory: str | Path, *, seed: int = 0, test: float = 0.3, eval: float = 0.0, limit: int | None = None
) -> dict[str, Path]:
    """Shuffle the pairs with ``seed`` (the first ``limit`` of them, when given) and write train.csv (the first
    1 - ``test`` - ``eval`` share, anchor,positive), eval.csv (the next ``eval`` share, when above 0) and
    test.csv (the rest, query,positive) into ``directory``; returns the paths by split name."""
    from .io import atomic_path

    rows = list(pairs())
    random.Random(seed).shuffle(rows)
    rows = rows[:limit] if limit else rows
    n_train, n_eval = int(len(rows) * (1 - test - eval)), round(len(rows) * eval)
    parts = {
        "train": (("anchor", "positive"), rows[:n_train]),
        "eval": (("query", "positive"), rows[n_train : n_train + n_eval]),
        "test": (("query", "positive"), rows[n_train + n_eval :]),
    }
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (header, part) in parts.items():
        if not part:
            continue
        paths[name] = out / f"{name}.csv"
        with atomic_path(paths[name]) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows((summary, body) for _, summary, body in part)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-o", "--output", default="data/numpy-docs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_splits(args.output, seed=args.seed)
    total = len(pairs())
    train = int(total * 0.7)  # as write_splits cuts it
    print(f"{total} functions: {train} train, {total - train} test pairs in {args.output}")


if __name__ == "__main__":
    main()
