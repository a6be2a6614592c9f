"""Labelled text from CSV, TSV and JSONL: reading, label encoding per task, tokenization. numpy only.

Tasks are the heads' ``capabilities['labels']``: "class" (one string/int label), "multi" (a list of labels,
or one string split on | ; or ,), "float" (a number, or a list of num_labels numbers), "token" (one label
per whitespace-separated word). Every problem with the data is a one-line ZooError naming file and line.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ZooError, did_you_mean

IGNORE_INDEX = -100
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# Tried in order when the user keeps the default column name and the file does not have it.
TEXT_COLUMNS = ("text", "sentence", "content", "review", "tweet", "document", "comment", "body", "tokens", "words")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "category", "target", "score", "tags", "ner_tags", "y")


@dataclass
class Table:
    """Rows of a data file: texts (str, or a word list for token tasks), optional pairs and raw labels."""
    source: str
    texts: list[Any]
    pairs: list[str] | None = None
    labels: list[Any] | None = None
    lines: list[int] = field(default_factory=list)  # the file line of each row, for messages

    def __len__(self) -> int:
        return len(self.texts)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")  # the usual encoding of spreadsheet exports


def _rows(path: Path) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ZooError(f"{path}: unsupported data format '{path.suffix or path.name}'; use .csv, .tsv or .jsonl")
    if not path.is_file():
        raise ZooError(f"{path}: no such file")
    text = _read_text(path)
    rows, lines = [], []
    if kind == "jsonl":
        columns: dict[str, None] = {}
        for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: \u2028 is valid in JSON
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ZooError(f"{path} line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ZooError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
            columns.update(dict.fromkeys(row))
            rows.append(row)
            lines.append(number)
        return rows, lines, list(columns)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if kind == "tsv" else ",")
    try:
        for row in reader:
            if None in row:
                raise ZooError(f"{path} line {reader.line_num}: more fields than the header has columns")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise ZooError(f"{path} line {reader.line_num}: {exc}") from None
    return rows, lines, list(reader.fieldnames or [])


def _pick_column(path: Path, columns: list[str], given: str | None, defaults: Sequence[str], what: str) -> str:
    if given is not None:
        if given not in columns:
            raise ZooError(f"{path}: no {what} column '{given}'{did_you_mean(given, columns)} "
                           f"columns: {', '.join(columns) or '(none)'}")
        return given
    for name in defaults:
        for column in columns:
            if column.lower() == name:
                if name != defaults[0]:
                    print(f"zoo: using column '{column}' of {path.name} as the {what}", file=sys.stderr)
                return column
    option = "--text-column" if what == "text" else "--label-column"
    raise ZooError(f"{path}: no {what} column '{defaults[0]}'; name it with {option} "
                   f"(columns: {', '.join(columns) or '(none)'})")


def read_table(path: str | Path, *, text_column: str | None = None, label_column: str | None = None,
               pair_column: str | None = None, require_labels: bool = True) -> Table:
    """Read a data file. Columns left as None are found by their usual names (text, label, sentiment...)."""
    path = Path(path)
    rows, lines, columns = _rows(path)
    if not rows:
        raise ZooError(f"{path}: no rows")
    text_key = _pick_column(path, columns, text_column, TEXT_COLUMNS, "text")
    pair_key = _pick_column(path, columns, pair_column, (), "text pair") if pair_column else None
    label_key = None
    if require_labels or label_column is not None:
        label_key = _pick_column(path, columns, label_column, LABEL_COLUMNS, "label")
    elif any(c.lower() in LABEL_COLUMNS for c in columns):
        label_key = next(c for c in columns if c.lower() in LABEL_COLUMNS)
    table = Table(str(path), [], [] if pair_key else None, [] if label_key else None, lines)
    for row, line in zip(rows, lines):
        text = row.get(text_key)
        if text is None or (isinstance(text, list) and not all(isinstance(w, str) for w in text)) \
                or not isinstance(text, (str, list)):
            raise ZooError(f"{path} line {line}: the text in '{text_key}' must be a string (or a list of words)")
        table.texts.append(text)
        if pair_key:
            pair = row.get(pair_key)
            if not isinstance(pair, str):
                raise ZooError(f"{path} line {line}: the text pair in '{pair_key}' must be a string")
            table.pairs.append(pair)
        if label_key:
            label = row.get(label_key)
            if label is None or (isinstance(label, str) and not label.strip()):
                raise ZooError(f"{path} line {line}: no label in column '{label_key}'")
            table.labels.append(label.strip() if isinstance(label, str) else label)
    return table


# ---- labels -------------------------------------------------------------------------------------------

def _sort_labels(names: set[str]) -> list[str]:
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def _class_name(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"label {value!r} must be a string or an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _split_multi(value: Any) -> list[str]:
    if isinstance(value, list):
        return [_class_name(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return [_class_name(v) for v in json.loads(text)]
        except (json.JSONDecodeError, TypeError):
            raise ValueError(f"label {text!r} is not a JSON list") from None
    for sep in ("|", ";", ","):
        if sep in text:
            return [p.strip() for p in text.split(sep) if p.strip()]
    return [text] if text else []


def _words(value: Any) -> list[str]:
    return value if isinstance(value, list) else str(value).split()


def label_names(table: Table, task: str, known: list[str] | None = None) -> list[str] | None:
    """The label set: the model's own when it has one, else every label seen in the data (sorted)."""
    if task == "float":
        return None
    if known:
        return list(known)
    names: set[str] = set()
    for label, line in zip(table.labels or [], table.lines):
        try:
            if task == "class":
                names.add(_class_name(label))
            else:
                names.update(_split_multi(label) if task == "multi" else [_class_name(t) for t in _words(label)])
        except ValueError as exc:
            raise ZooError(f"{table.source} line {line}: {exc}") from None
    return _sort_labels(names)


def encode_labels(table: Table, task: str, names: list[str] | None, num_labels: int = 1) -> list[Any]:
    """Raw labels -> class ids, multi-hot rows, float rows or per-word id lists (for "token")."""
    index = {n: i for i, n in enumerate(names or [])}
    out: list[Any] = []
    for label, line, text in zip(table.labels or [], table.lines, table.texts):
        where = f"{table.source} line {line}"
        try:
            if task == "class":
                out.append(_lookup(index, _class_name(label), where))
            elif task == "multi":
                row = np.zeros(len(index), dtype=np.float32)
                for name in _split_multi(label):
                    row[_lookup(index, name, where)] = 1.0
                out.append(row)
            elif task == "float":
                values = label if isinstance(label, list) else str(label).replace(";", ",").split(",")
                row = np.asarray([float(v) for v in values], dtype=np.float32)
                if len(row) != num_labels:
                    raise ValueError(f"{len(row)} numbers in the label but the model predicts {num_labels}")
                out.append(row)
            elif task == "token":
                tags, words = _words(label), _words(text)
                if len(tags) != len(words):
                    raise ValueError(f"{len(words)} words but {len(tags)} labels")
                out.append([_lookup(index, _class_name(t), where) for t in tags])
            else:
                raise ZooError(f"unknown task '{task}'")
        except ValueError as exc:
            detail = str(exc)
            if task == "float" and detail.startswith("could not convert"):
                detail = f"label {label!r} is not a number"
            raise ZooError(f"{where}: {detail}") from None
    return out


def _lookup(index: dict[str, int], name: str, where: str) -> int:
    if name not in index:
        shown = ", ".join(list(index)[:10]) + (f", ... ({len(index)} in all)" if len(index) > 10 else "")
        raise ZooError(f"{where}: label '{name}' is not one of the model's labels ({shown})"
                       f"{did_you_mean(name, index)}")
    return index[name]


# ---- tokens -------------------------------------------------------------------------------------------

def tokenize(tokenizer, table: Table, max_length: int, token_labels: list[list[int]] | None = None
             ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Token ids per row (truncated at max_length); for token tasks, labels on each word's first piece."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    if token_labels is not None or any(isinstance(t, list) for t in table.texts[:1]):
        encodings = tokenizer.encode_batch([_words(t) for t in table.texts], is_pretokenized=True)
    elif table.pairs is not None:
        encodings = tokenizer.encode_batch(list(zip(table.texts, table.pairs)))
    else:
        encodings = tokenizer.encode_batch(table.texts)
    ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
    if token_labels is None:
        return ids, None
    aligned = []
    for enc, tags in zip(encodings, token_labels):
        row, previous = np.full(len(enc.ids), IGNORE_INDEX, dtype=np.int64), None
        for position, word in enumerate(enc.word_ids):
            if word is not None and word != previous:
                row[position] = tags[word]
            previous = word
        aligned.append(row)
    return ids, aligned


def pad(rows: Sequence[np.ndarray], value: int) -> np.ndarray:
    """Stack 1-D rows into (B, longest), filled with ``value``."""
    out = np.full((len(rows), max((len(r) for r in rows), default=1) or 1), value, dtype=rows[0].dtype if rows else np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
