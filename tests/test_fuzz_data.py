"""Hypothesis: the data loaders (CSV, TSV, JSONL) read back exactly what the csv and json modules wrote
(quoting, newlines inside fields, BOMs, blank lines, UTF-8 or cp1252), streamed or whole; and any bytes at
all give either rows or one clean ZooError, never anything else. Derandomised, bounded examples."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zoo.data import iter_tables, read_table
from zoo.errors import ZooError

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ANY_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",)), max_size=30
)  # any unicode but lone surrogates
CP1252 = (
    "".join(chr(i) for i in range(32, 127))
    + "\t\n\r\"',"
    + bytes(range(0xA0, 0x100)).decode("cp1252")
    + "€œŠ™"
)
LATIN_TEXT = st.text(st.sampled_from(CP1252), max_size=30)


def label_strategy(chars):
    return st.text(chars, min_size=1, max_size=8).filter(lambda s: s.strip())


ROWS = st.lists(
    st.tuples(ANY_TEXT, label_strategy(st.characters(blacklist_categories=("Cs",)))), min_size=1, max_size=12
)
LATIN_ROWS = st.lists(st.tuples(LATIN_TEXT, label_strategy(st.sampled_from(CP1252))), min_size=1, max_size=12)


def serialise(rows, kind: str, newline: str, blank_every: int) -> str:
    """The file as the csv / json module writes it, with a blank line after every ``blank_every`` rows."""
    out = io.StringIO(newline="")
    if kind == "jsonl":
        lines = [json.dumps({"text": t, "label": y}) for t, y in rows]
    else:
        writer = csv.writer(out, delimiter="\t" if kind == "tsv" else ",", lineterminator=newline)
        writer.writerow(["text", "label"])
        head, out = out.getvalue(), io.StringIO(newline="")
        writer = csv.writer(out, delimiter="\t" if kind == "tsv" else ",", lineterminator=newline)
        lines = []
        for row in rows:
            writer.writerow(row)
            lines.append(out.getvalue()[: -len(newline)])
            out.seek(0)
            out.truncate()
        lines = [head[: -len(newline)]] + lines
    body = []
    for i, line in enumerate(lines):
        body.append(line + newline)
        if blank_every and i % blank_every == blank_every - 1:
            body.append(newline)
    return "".join(body)


def check_reads_back(path, rows):
    table = read_table(path)
    assert table.texts == [t for t, _ in rows]
    assert table.labels == [y.strip() for _, y in rows]
    streamed = [t for chunk in iter_tables(path, 5) for t in chunk.texts]
    assert streamed == table.texts


@FUZZ
@given(
    rows=ROWS,
    kind=st.sampled_from(["csv", "tsv", "jsonl"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    blank_every=st.integers(0, 3),
)
def test_utf8_files_read_back_exactly(tmp_path_factory, rows, kind, newline, bom, blank_every):
    if kind != "jsonl":  # csv.writer leaves a lone \r unquoted unless it is in the line terminator
        assume(newline == "\r\n" or all("\r" not in t + y for t, y in rows))
    path = tmp_path_factory.mktemp("u") / f"d.{kind}"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + serialise(rows, kind, newline, blank_every).encode())
    check_reads_back(path, rows)


@FUZZ
@given(rows=LATIN_ROWS, kind=st.sampled_from(["csv", "tsv", "jsonl"]))
def test_cp1252_files_read_back_exactly(tmp_path_factory, rows, kind):
    raw = serialise(rows, kind, "\r\n", 0).encode("cp1252")
    try:
        raw.decode("utf-8")
        assume(False)  # bytes that are also valid UTF-8 are read as UTF-8, by design
    except UnicodeDecodeError:
        pass
    path = tmp_path_factory.mktemp("l") / f"d.{kind}"
    path.write_bytes(raw)
    check_reads_back(path, rows)


def read_or_clean_error(path):
    try:
        table = read_table(path, require_labels=False)
    except ZooError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return None
    assert len(table) > 0 and all(isinstance(t, (str, list)) for t in table.texts)
    return table


@FUZZ
@given(
    raw=st.binary(max_size=300),
    kind=st.sampled_from(["csv", "tsv", "jsonl"]),
    prefix=st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"text,label\n", b'{"text": "a"}\n']),
)
def test_any_bytes_give_rows_or_a_clean_error(tmp_path_factory, raw, kind, prefix):
    path = tmp_path_factory.mktemp("b") / f"d.{kind}"
    path.write_bytes(prefix + raw)
    read_or_clean_error(path)


@FUZZ
@given(rows=ROWS, kind=st.sampled_from(["csv", "tsv", "jsonl"]), data=st.data())
def test_damaged_files_give_rows_or_a_clean_error(tmp_path_factory, rows, kind, data):
    """A valid file with a span deleted, bytes inserted, or a quote or brace dropped."""
    raw = serialise(rows, kind, "\n", 0).encode()
    start = data.draw(st.integers(0, len(raw)))
    end = data.draw(st.integers(start, min(len(raw), start + 20)))
    raw = (
        raw[:start]
        + data.draw(st.binary(max_size=10) | st.sampled_from([b'"', b"{", b"\x00", b"\r"]))
        + raw[end:]
    )
    path = tmp_path_factory.mktemp("d") / f"d.{kind}"
    path.write_bytes(raw)
    read_or_clean_error(path)


def test_huge_fields(tmp_path):
    huge = "word " * 60_000  # 300 kB in one field
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": huge, "label": "a"}) + "\n")
    assert read_table(tmp_path / "d.jsonl").texts == [huge]
    (tmp_path / "d.csv").write_text(f"text,label\n{huge},a\n")
    try:
        table = read_table(tmp_path / "d.csv")
    except ZooError as exc:
        assert str(exc).startswith(f"{tmp_path / 'd.csv'} line ") and "field larger than field limit" in str(
            exc
        )
    else:
        assert table.texts == [huge]
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "\n")
    try:
        read_table(tmp_path / "deep.jsonl")
    except ZooError as exc:
        assert "line 1" in str(exc)
