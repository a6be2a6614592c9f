"""Under load: `zoo predict --file` streams its input. Peak traced memory for 100k lines is about that of
10k lines (measured with tracemalloc; nothing is timed), and the streamed output equals predicting the
whole file at once."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tracemalloc

import pytest
from click.testing import CliRunner

import zoo
from zoo.cli import cli
from zoo.tokenizer import train_wordpiece

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "it",
    "was",
    "very",
    "so",
    "good",
    "bad",
    "happy",
    "sad",
]


def text(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(3 + i % 9))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("load")
    model = zoo.build_model(
        "transformer",
        "cls",
        d_model=8,
        num_layers=1,
        num_heads=1,
        vocab_size=40,
        max_length=16,
        dropout=0.0,
        seed=0,
        labels=["neg", "pos"],
    )
    model.tokenizer = train_wordpiece([text(i) for i in range(200)], vocab_size=40)
    return model.save(d / "m"), d


def write_csv(path, n):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows((i, text(i)) for i in range(n))
    return path


def peak_bytes(args) -> int:
    """Peak memory traced while the command runs, its output going to /dev/null."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        tracemalloc.start()
        try:
            cli.main([str(a) for a in args], standalone_mode=False)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


@pytest.mark.slow
def test_predict_file_memory_does_not_grow_with_input(model_dir):
    model, d = model_dir
    warm, small, large = (write_csv(d / f"{n}.csv", n) for n in (100, 10_000, 100_000))
    peak_bytes(["predict", model, "--file", warm])  # warm up: imports and caches are not the input's
    peaks = {
        n: peak_bytes(["predict", model, "--file", path, "--json", "--batch-size", "1024"])
        for n, path in ((10, small), (100, large))
    }
    # predicting the whole file at once held every row, its ids and its result: 7.4 MB for 10k, 73 MB for 100k
    assert peaks[100] < 1.3 * peaks[10], peaks


def test_streamed_output_equals_predicting_the_whole_file(model_dir, monkeypatch):
    from zoo.cli import predict as predict_module
    from zoo.data import read_table
    from zoo.inference import load_predictor, predict_table

    model, d = model_dir
    path = write_csv(d / "small.csv", 300)
    monkeypatch.setattr(predict_module, "CHUNK_ROWS", 7)  # many chunks, the last one partial
    result = CliRunner().invoke(
        cli, ["predict", str(model), "--file", str(path), "--json", "--batch-size", "5"]
    )
    assert result.exit_code == 0, result.output
    streamed = [json.loads(line) for line in result.stdout.splitlines()]
    whole = predict_table(load_predictor(model), read_table(path, require_labels=False), batch_size=64)
    assert [r["text"] for r in streamed] == [r["text"] for r in whole] == [text(i) for i in range(300)]
    assert [r["label"] for r in streamed] == [r["label"] for r in whole]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(streamed, whole)) < 1e-5
