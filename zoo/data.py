"""Labelled text from CSV, TSV and JSONL: rows with a text, an optional text pair and a raw label. numpy only.

What a label means (and how it becomes a target) is the model's task's business (zoo.tasks); this module
only reads. Every problem with the data is a one-line ZooError naming file and line.
"""

from __future__ import annotations

import codecs
import csv
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ZooError, did_you_mean

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt"}
# Byte-order marks, longest first (a UTF-32 LE mark starts like a UTF-16 LE one).
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_announced: set[Path] = set()  # files already said to be read as cp1252
# Tried in order when the user keeps the default column name and the file does not have it.
TEXT_COLUMNS = (
    "text",
    "sentence",
    "content",
    "review",
    "tweet",
    "document",
    "comment",
    "body",
    "tokens",
    "words",
)
LABEL_COLUMNS = (
    "label",
    "labels",
    "sentiment",
    "class",
    "category",
    "target",
    "score",
    "tags",
    "ner_tags",
    "y",
)


@dataclass
class Table:
    """Rows of a data file: texts (str, or a word list for token tasks), optional pairs and raw labels."""

    source: str
    texts: list[Any]
    pairs: list[str] | None = None
    labels: list[Any] | None = None
    lines: list[int] = field(default_factory=list)  # the file line of each row, for messages
    columns: dict[str, list[Any]] = field(default_factory=dict)  # further columns a task reads, by role

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, rows: Sequence[int]) -> Table:
        """The table of the given rows, in that order."""

        def pick(values):
            return None if values is None else [values[i] for i in rows]

        return Table(
            self.source,
            [self.texts[i] for i in rows],
            pick(self.pairs),
            pick(self.labels),
            [self.lines[i] for i in rows] if self.lines else [],
            {k: [v[i] for i in rows] for k, v in self.columns.items()},
        )


def _encoding(path: Path, given: str | None = None) -> str:
    """``given`` (--encoding); else the encoding a byte-order mark names (UTF-8, UTF-16, UTF-32); else
    utf-8-sig when the whole file is UTF-8; else cp1252 (the usual encoding of spreadsheet exports), said
    once on stderr. Checked block by block, so a large file is never held in memory."""
    if given:
        try:
            info = codecs.lookup(given)
            if not getattr(info, "_is_text_encoding", True):  # base64, rot13...: bytes-to-bytes codecs
                raise LookupError(given)
            name = info.name
        except LookupError:
            raise ZooError(f"unknown encoding '{given}' (e.g. utf-8, cp1252, latin-1, utf-16)") from None
        return "utf-8-sig" if name == "utf-8" else name  # a UTF-8 byte-order mark is not text
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        start = f.read(4)
        for bom, name in BOMS:
            if start.startswith(bom):
                return name
        f.seek(0)
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            if path not in _announced:
                _announced.add(path)
                print(
                    f"zoo: {path} is not UTF-8; reading it as cp1252 (pass --encoding to choose another)",
                    file=sys.stderr,
                )
            return "cp1252"
    return "utf-8-sig"


def _row_stream(
    path: Path, encoding: str | None = None
) -> tuple[list[str] | None, Iterator[tuple[dict[str, Any], int]]]:
    """(the CSV/TSV header, or None for JSONL and text; an iterator of (row, file line)). Reads lazily."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ZooError(
            f"{path}: unsupported data format '{path.suffix or path.name}'; "
            "use .csv, .tsv, .jsonl or .txt (one text per line)"
        )
    if not path.is_file():
        raise ZooError(f"{path}: no such file")
    try:
        encoding = _encoding(path, encoding)
        if kind == "jsonl":
            return None, _jsonl_rows(path, encoding)
        if kind == "txt":
            return ["text"], _text_rows(path, encoding)
        f = open(path, encoding=encoding, errors="replace", newline="")  # noqa: SIM115 (closed by _csv_rows)
    except OSError as exc:
        raise ZooError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    reader = csv.DictReader(f, delimiter="\t" if kind == "tsv" else ",")
    try:
        header = list(reader.fieldnames or [])
    except csv.Error as exc:
        f.close()
        raise ZooError(f"{path} line {reader.line_num}: {exc}") from None
    return header, _csv_rows(path, f, reader)


def _jsonl_rows(path: Path, encoding: str) -> Iterator[tuple[dict[str, Any], int]]:
    # lines end at \n only: \u2028 and a lone \r are valid inside a JSON line
    with open(path, encoding=encoding, errors="replace", newline="\n") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ZooError(f"{path} line {number}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise ZooError(f"{path} line {number}: JSON nested too deeply") from None
            if not isinstance(row, dict):
                raise ZooError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
            yield row, number


def _text_rows(path: Path, encoding: str) -> Iterator[tuple[dict[str, Any], int]]:
    """A plain text file: one text per line, blank lines skipped."""
    with open(path, encoding=encoding, errors="replace", newline=None) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield {"text": line.rstrip("\n")}, number


def _csv_rows(path: Path, f, reader: csv.DictReader) -> Iterator[tuple[dict[str, Any], int]]:
    with f:
        try:
            for row in reader:
                if None in row:
                    raise ZooError(f"{path} line {reader.line_num}: more fields than the header has columns")
                yield row, reader.line_num
        except csv.Error as exc:
            raise ZooError(f"{path} line {reader.line_num}: {exc}") from None


def _pick_column(
    path: Path, columns: list[str], given: str | None, defaults: Sequence[str], what: str
) -> str:
    if given is not None:
        if given not in columns:
            raise ZooError(
                f"{path}: no {what} column '{given}'{did_you_mean(given, columns) or ';'} "
                f"columns: {', '.join(columns) or '(none)'}"
            )
        return given
    for name in defaults:
        for column in columns:
            if column.lower() == name:
                if name != defaults[0]:
                    print(f"zoo: using column '{column}' of {path.name} as the {what}", file=sys.stderr)
                return column
    option = "--text-column" if what == "text" else "--label-column"
    raise ZooError(
        f"{path}: no {what} column '{defaults[0]}'; name it with {option} "
        f"(columns: {', '.join(columns) or '(none)'})"
    )


class _Columns:
    """The columns a read uses: found once (from the header, or the first JSON rows) for every chunk."""

    def __init__(
        self,
        path: Path,
        columns: list[str],
        text_column,
        label_column,
        pair_column,
        require_labels,
        allow_empty_labels: bool = False,
    ):
        self.allow_empty_labels = allow_empty_labels
        self.text = _pick_column(path, columns, text_column, TEXT_COLUMNS, "text")
        self.pair = _pick_column(path, columns, pair_column, (), "text pair") if pair_column else None
        self.label = None
        if require_labels or label_column is not None:  # predicting needs no labels: none are read
            self.label = _pick_column(path, columns, label_column, LABEL_COLUMNS, "label")

    def table(self, path: Path, rows: list[dict[str, Any]], lines: list[int]) -> Table:
        table = Table(str(path), [], [] if self.pair else None, [] if self.label else None, lines)
        for row, line in zip(rows, lines):
            text = row.get(self.text)
            if (
                text is None
                or (isinstance(text, list) and not all(isinstance(w, str) for w in text))
                or not isinstance(text, (str, list))
            ):
                raise ZooError(
                    f"{path} line {line}: the text in '{self.text}' must be a string (or a list of words)"
                )
            table.texts.append(text)
            if self.pair:
                pair = row.get(self.pair)
                if not isinstance(pair, str):
                    raise ZooError(f"{path} line {line}: the text pair in '{self.pair}' must be a string")
                table.pairs.append(pair)  # type: ignore[union-attr]  # a list when self.pair is set
            if self.label:
                label = row.get(self.label)
                if label is None or (
                    isinstance(label, str) and not label.strip() and not self.allow_empty_labels
                ):
                    raise ZooError(f"{path} line {line}: no label in column '{self.label}'")
                table.labels.append(label.strip() if isinstance(label, str) else label)  # type: ignore[union-attr]  # a list when self.label is set
        return table


def _columns_of(header: list[str] | None, rows: list[dict[str, Any]]) -> list[str]:
    return header if header is not None else list(dict.fromkeys(k for row in rows for k in row))


def read_table(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    pair_column: str | None = None,
    require_labels: bool = True,
    allow_empty_labels: bool = False,
    encoding: str | None = None,
) -> Table:
    """Read a data file. Columns left as None are found by their usual names (text, label, sentiment...).
    ``allow_empty_labels``: an empty label cell is a label (a multi-label row with no labels), not a mistake.
    ``encoding`` None finds it (a byte-order mark, UTF-8, else cp1252)."""
    path = Path(path)
    header, stream = _row_stream(path, encoding)
    pairs = list(stream)
    if not pairs:
        raise ZooError(f"{path}: no rows")
    rows, lines = [r for r, _ in pairs], [n for _, n in pairs]
    columns = _Columns(
        path,
        _columns_of(header, rows),
        text_column,
        label_column,
        pair_column,
        require_labels,
        allow_empty_labels,
    )
    return columns.table(path, rows, lines)


def read_columns(
    path: str | Path,
    roles: Mapping[str, Sequence[str]],
    *,
    optional: Sequence[str] = (),
    numeric: Sequence[str] = (),
    given: dict[str, str | None] | None = None,
    encoding: str | None = None,
) -> tuple[dict[str, list[Any] | None], list[int]]:
    """Columns by role: ``roles`` maps a role to the column names that fill it (the first one found wins,
    case-insensitive); ``given`` names a role's column outright. A role in ``optional`` may be absent
    (None). Cells are non-empty strings, or numbers for the roles in ``numeric``.
    -> ({role: cells or None}, file lines)."""
    path = Path(path)
    header, stream = _row_stream(path, encoding)
    pairs = list(stream)
    if not pairs:
        raise ZooError(f"{path}: no rows")
    columns = _columns_of(header, [r for r, _ in pairs])
    lower = {c.lower(): c for c in reversed(columns)}
    picked: dict[str, str | None] = {}
    for role, names in roles.items():
        name = (given or {}).get(role)
        if name is not None and name not in columns:
            raise ZooError(
                f"{path}: no {role} column '{name}'{did_you_mean(name, columns) or ';'} "
                f"columns: {', '.join(columns) or '(none)'}"
            )
        picked[role] = name or next((lower[n] for n in names if n in lower), None)
        if picked[role] is None and role not in optional:
            raise ZooError(
                f"{path}: no {role} column (name it {' or '.join(names)}); "
                f"columns: {', '.join(columns) or '(none)'}"
            )
    out: dict[str, list[Any] | None] = {role: [] if column else None for role, column in picked.items()}
    for row, line in pairs:
        for role, column in picked.items():
            if column is None:
                continue
            cell = row.get(column)
            if role in numeric:
                try:
                    cell = float(cell)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise ZooError(
                        f"{path} line {line}: the {role} in column '{column}' must be a number, got {cell!r}"
                    ) from None
            elif not isinstance(cell, str) or not cell.strip():
                raise ZooError(
                    f"{path} line {line}: the {role} in column '{column}' is "
                    + ("empty" if cell is None or isinstance(cell, str) else "not a string")
                )
            out[role].append(cell)  # type: ignore[union-attr]
    return out, [n for _, n in pairs]


def iter_tables(
    path: str | Path,
    chunk_rows: int = 4096,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    pair_column: str | None = None,
    require_labels: bool = True,
    encoding: str | None = None,
) -> Iterator[Table]:
    """read_table in chunks of ``chunk_rows`` rows, for inputs too large to hold: memory stays constant.

    JSONL columns are found from the first chunk's rows (read_table looks at every row)."""
    path = Path(path)
    header, stream = _row_stream(path, encoding)
    columns: _Columns | None = None
    for chunk in _chunks(stream, chunk_rows):
        rows, lines = [r for r, _ in chunk], [n for _, n in chunk]
        if columns is None:
            columns = _Columns(
                path, _columns_of(header, rows), text_column, label_column, pair_column, require_labels
            )
        yield columns.table(path, rows, lines)
    if columns is None:
        raise ZooError(f"{path}: no rows")


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def pad(rows: Sequence[np.ndarray], value: int) -> np.ndarray:
    """Stack 1-D rows into (B, longest), filled with ``value``."""
    out = np.full(
        (len(rows), max((len(r) for r in rows), default=1) or 1),
        value,
        dtype=rows[0].dtype if rows else np.int64,
    )
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
