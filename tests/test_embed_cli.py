"""`zoo embed` on a model directory and on an export (no torch): JSON, .npy and .jsonl output, prefixes,
normalisation, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from test_embedding import TINY_TEXTS, embed, save_sentence_dir

from zoo.cli import cli
from zoo.model import load_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny sentence-transformers import (mean pooling, Dense, Normalize), its export, and a classifier."""
    root = tmp_path_factory.mktemp("embed")
    directory = save_sentence_dir(root, pooling="mean")
    run = CliRunner().invoke
    for args in (
        ["build", "--from-pretrained", str(directory), "-o", str(root / "emb")],
        ["export", str(root / "emb"), "--onnx", "-o", str(root / "x")],
        [
            "build",
            "--from-pretrained",
            str(directory),
            "--head",
            "cls",
            "--labels",
            "a,b",
            "-o",
            str(root / "clf"),
        ],
    ):
        result = run(cli, args)
        assert result.exit_code == 0, result.output
    return root


def zoo(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_json_vectors_from_a_model_directory_and_from_its_export(models):
    want = embed(load_model(models / "emb"), TINY_TEXTS)
    for source in ("emb", "x"):
        result = zoo("embed", models / source, *TINY_TEXTS, "--json", "--batch-size", 2)
        assert result.exit_code == 0, result.output
        got = np.asarray(json.loads(result.stdout))  # stderr may say texts were cut
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_a_file_to_npy_and_jsonl_with_a_prefix(models, tmp_path):
    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TINY_TEXTS))
    assert (
        zoo("embed", models / "emb", "--file", data, "-o", tmp_path / "v.npy", "--prefix", "the ").exit_code
        == 0
    )
    assert (
        zoo("embed", models / "x", "--file", data, "-o", tmp_path / "v.jsonl", "--prefix", "the ").exit_code
        == 0
    )
    want = embed(load_model(models / "emb"), ["the " + t for t in TINY_TEXTS])
    assert np.abs(np.load(tmp_path / "v.npy") - want).max() < 1e-5
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == TINY_TEXTS
    assert np.abs(np.asarray([r["embedding"] for r in rows]) - want).max() < 1e-5


def test_normalisation_flags(models):
    raw = np.asarray(json.loads(zoo("embed", models / "emb", *TINY_TEXTS, "--json", "--no-normalize").stdout))
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1)
    unit = np.asarray(json.loads(zoo("embed", models / "emb", *TINY_TEXTS, "--json").stdout))
    assert np.abs(raw / np.linalg.norm(raw, axis=1, keepdims=True) - unit).max() < 1e-5
    result = zoo("embed", models / "x", "a", "--no-normalize")
    assert result.exit_code == 2 and "normalises inside its graph" in result.output


def test_one_line_errors(models, tmp_path):
    result = zoo("embed", models / "clf", "some text")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {models / 'clf'}: a 'classification' model gives logits, not embeddings; `zoo embed` needs an "
        "embedding model (zoo build --head embedding)"
    ]
    assert (
        "--output must end in .npy or .jsonl"
        in zoo("embed", models / "emb", "a", "-o", tmp_path / "v.txt").output
    )
    empty = tmp_path / "e.csv"
    empty.write_text('text\nfine\n" "\n')
    result = zoo("embed", models / "emb", "--file", empty)
    assert result.exit_code == 2 and "e.csv line 3: empty text" in result.output


def test_an_export_embeds_without_torch(models):
    code = (
        "import sys; sys.modules['torch'] = None; from zoo.cli import main; "
        f"sys.argv = ['zoo', 'embed', {str(models / 'x')!r}, 'a cat', '--json']; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)[0]) == 12
