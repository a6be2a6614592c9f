"""Data reading and label encoding (zoo.data), and the numpy metrics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from zoo import metrics as M
from zoo.data import read_table
from zoo.errors import ZooError


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_tsv_jsonl_read_the_same(tmp_path):
    csv = write(tmp_path / "d.csv", 'text,label\n"hello, world",pos\nbad day,neg\n')
    tsv = write(tmp_path / "d.tsv", "text\tlabel\nhello, world\tpos\nbad day\tneg\n")
    jsonl = write(
        tmp_path / "d.jsonl",
        '{"text": "hello, world", "label": "pos"}\n\n{"text": "bad day", "label": "neg"}\n',
    )
    for path in (csv, tsv, jsonl):
        table = read_table(path)
        assert table.texts == ["hello, world", "bad day"] and table.labels == ["pos", "neg"]


def test_pairs_and_usual_column_names(tmp_path, capsys):
    path = write(tmp_path / "d.csv", "sentence,premise,sentiment\na,b,1\nc,d,0\n")
    table = read_table(path, pair_column="premise")
    assert table.pairs == ["b", "d"] and table.labels == ["1", "0"]
    assert "using column 'sentence' of d.csv as the text" in capsys.readouterr().err


def test_latin1_file_is_read(tmp_path):
    table = read_table(write(tmp_path / "d.csv", "text,label\ncaf\xe9 cr\xe8me,x\n", "latin-1"))
    assert table.texts == ["café crème"]


@pytest.mark.parametrize(
    "name, content, kwargs, message",
    [
        (
            "d.xlsx",
            "x",
            {},
            "d.xlsx: unsupported data format '.xlsx'; use .csv, .tsv, .jsonl or .txt (one text per line)",
        ),
        ("d.csv", "text,label\n", {}, "d.csv: no rows"),
        ("d.csv", "text,label\nhi,\n", {}, "d.csv line 2: no label in column 'label'"),
        (
            "d.csv",
            "txt,label\nhi,a\n",
            {"text_column": "tex"},
            "d.csv: no text column 'tex'; did you mean 'txt'? columns: txt, label",
        ),
        (
            "d.csv",
            "body2,label\nhi,a\n",
            {},
            "d.csv: no text column 'text'; name it with --text-column (columns: body2, label)",
        ),
        ("d.csv", "text,label\nhi,a,extra\n", {}, "d.csv line 2: more fields than the header has columns"),
        (
            "d.jsonl",
            '{"text": "a", "label": 1}\n{"text": "b", "label": \n',
            {},
            "d.jsonl line 2: not valid JSON",
        ),
        ("d.jsonl", "[1, 2]\n", {}, "d.jsonl line 1: expected a JSON object, got list"),
        ("d.jsonl", '{"text": 5, "label": 1}\n', {}, "d.jsonl line 1: the text in 'text' must be a string"),
    ],
)
def test_data_errors_are_one_line(tmp_path, name, content, kwargs, message):
    with pytest.raises(ZooError) as info:
        read_table(write(tmp_path / name, content), **kwargs)
    assert str(info.value).startswith(
        str(tmp_path / message.split(":")[0]) + message[len(message.split(":")[0]) :]
    )
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ZooError, match=r"nope\.csv: no such file$"):
        read_table(tmp_path / "nope.csv")


def test_classification_metrics_by_hand():
    # true:  a a a b b c ; pred: a b a b c c
    got = M.classification_metrics([0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 2, 2], ["a", "b", "c"])
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # a: P=2/2 R=2/3 F1=0.8 ; b: P=1/2 R=1/2 F1=0.5 ; c: P=1/2 R=1 F1=2/3
    assert got["per_class"]["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert got["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert got["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_multilabel_regression_and_token_metrics_by_hand():
    got = M.multilabel_metrics(
        np.array([[1, 0], [1, 1], [0, 0]]), np.array([[1, 1], [1, 0], [0, 0]]), ["x", "y"]
    )
    # x: tp 2 fp 0 fn 0 -> F1 1 ; y: tp 0 fp 1 fn 1 -> F1 0 ; micro: tp 2 fp 1 fn 1 -> 2/3
    assert got["exact_match"] == pytest.approx(1 / 3)
    assert got["micro_f1"] == pytest.approx(2 / 3) and got["macro_f1"] == pytest.approx(0.5)
    reg = M.regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert reg["mse"] == pytest.approx(4 / 3) and reg["mae"] == pytest.approx(2 / 3)
    assert reg["r2"] == pytest.approx(1 - 4 / 2)
    assert reg["pearson"] == pytest.approx(np.corrcoef([1, 2, 3], [1, 2, 5])[0, 1])
    tok = M.token_metrics(
        np.array([[0, -100, 1], [1, 1, -100]]), np.array([[0, 1, 1], [0, 1, 0]]), ["O", "X"]
    )
    assert tok["tokens"] == 4 and tok["accuracy"] == pytest.approx(3 / 4)


def test_quoted_newlines_and_unicode_line_separators(tmp_path):
    csv = write(tmp_path / "d.csv", 'text,label\n"two\nlines",a\n"x\u2028y\x1cz",b\nlast,c\n')
    table = read_table(csv)
    assert table.texts == ["two\nlines", "x\u2028y\x1cz", "last"] and table.lines == [3, 4, 5]
    jsonl = write(tmp_path / "d.jsonl", '{"text": "x\u2028y", "label": "a"}\n')
    assert read_table(jsonl).texts == ["x\u2028y"]
