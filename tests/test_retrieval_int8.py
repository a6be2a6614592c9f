"""int8 for retrieval models, judged by the metric that matters: an embedding model's int8 export is checked on
labelled pairs (the training/evaluation files recorded in the model directory, or --calibration-data) by the
drop in ndcg@10 from fp32 and by the mean cosine of its vectors with fp32's; a reranker's is calibrated on
(query, text) pairs and checked by ndcg@10 over each query's candidates. Tiny random BERTs made here."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_hf import WORDS, save_checkpoint

from zoo.cli import cli
from zoo.errors import ExportMismatch
from zoo.export import export_model
from zoo.export.held_out import held_out
from zoo.export.runtime import OnnxModel
from zoo.hf import import_pretrained
from zoo.inference import ModelPredictor, evaluate_table
from zoo.retrieval import pair_retrieval, rerank_metrics
from zoo.tasks import load_task

pytestmark = pytest.mark.slow  # each test exports and quantises a model (a few seconds)
PLAIN = [w for w in WORDS if w.isalpha()]


def sentence(rng, n=5):
    return " ".join(rng.choice(PLAIN) for _ in range(n))


def write(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def spread(model):
    """Weights large enough that texts get distinct vectors and scores (a tiny random BERT's barely differ)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for weight in (w for w in model.parameters() if w.dim() == 2):
            weight.copy_(torch.randn(weight.shape, generator=generator) * 0.1)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("int8ret") / "bert"
    save_checkpoint(path)
    return path


def pairs(rng, n):
    return [(sentence(rng), sentence(rng, 8)) for _ in range(n)]


def test_an_embedding_export_is_gated_on_ndcg_of_its_recorded_pairs(checkpoint, tmp_path):
    rng = random.Random(0)
    train = write(tmp_path / "train.csv", ["anchor", "positive"], pairs(rng, 60))
    dev = write(tmp_path / "dev.csv", ["query", "positive"], pairs(rng, 40))
    model = spread(import_pretrained(checkpoint, head="embedding"))
    model.spec.extra["training"] = {"train": str(train), "eval": str(dev)}
    manifest = export_model(model, tmp_path / "x", quantize="int8", allow_mismatch=True)
    int8 = manifest["int8"]
    measures = int8["measures"]
    assert measures["labelled"] and "training data calibrates, evaluation data checks" in int8["texts"]
    assert int8["compared"] == 80  # the 40 evaluation queries and their 40 documents
    # the figures against independent runs: the eager model, and the int8 file through onnxruntime
    table = model.task.read(dev)
    eager = evaluate_table(ModelPredictor(model), table)["ndcg@10"]
    assert abs(measures["ndcg@10_fp32"] - eager) < 1e-6
    served = OnnxModel(tmp_path / "x", file="model.int8.onnx", warn=False)
    assert abs(measures["ndcg@10_int8"] - evaluate_table(served, table)["ndcg@10"]) < 1e-6
    drop = measures["ndcg@10_fp32"] - measures["ndcg@10_int8"]
    assert abs(measures["ndcg@10_drop"] - drop) < 1e-12
    fp32 = OnnxModel(tmp_path / "x", file="model.onnx", warn=False)
    texts = [*table.texts, *table.pairs]
    a, b = (fp32.logits(*fp32.encode(texts)), served.logits(*served.encode(texts)))
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert abs(measures["mean_cosine"] - cosine.mean()) < 1e-5
    # the gate and what the manifest records of it
    assert int8["max_ndcg_drop"] == pytest.approx(0.01) and measures["min_mean_cosine"] == 0.98
    assert int8["passed"] == (drop <= 0.01 + 1e-12 and measures["mean_cosine"] >= 0.98)
    assert manifest["serve"] == ("model.int8.onnx" if int8["passed"] else "model.onnx")


def test_the_labelled_embedding_check_fails_on_a_drop_or_a_low_cosine():
    task = load_task("embedding")
    rng = np.random.default_rng(0)
    anchors = rng.normal(size=(30, 16))
    positives = anchors + rng.normal(size=anchors.shape) * 0.3
    fp32 = np.concatenate([anchors, positives])
    targets = [(0, f"q{i}", None) for i in range(30)] + [(1, f"d{i}", None) for i in range(30)]
    same = task.labelled_agreement([(fp32, fp32, None)], targets)
    assert same["agreement"] == 1.0 and same["ndcg@10_drop"] == 0.0 and same["labelled"]
    assert same["ndcg@10_fp32"] == pytest.approx(pair_retrieval(anchors, positives)["ndcg@10"])
    shuffled = np.concatenate([anchors, positives[rng.permutation(30)]])  # the positives swapped about
    worse = task.labelled_agreement([(fp32, shuffled, None)], targets)
    want = pair_retrieval(anchors, positives)["ndcg@10"] - pair_retrieval(anchors, shuffled[30:])["ndcg@10"]
    assert worse["ndcg@10_drop"] == pytest.approx(want) and want > 0.1
    assert worse["agreement"] == 0.0 or worse["agreement"] == pytest.approx(1 - want)
    noisy = fp32 + rng.normal(size=fp32.shape) * 2  # rankings may survive, the vectors do not
    assert task.labelled_agreement([(fp32, noisy, None)], targets)["mean_cosine"] < 0.98
    assert task.labelled_agreement([(fp32, noisy, None)], targets)["agreement"] == 0.0


def test_an_export_whose_int8_misses_the_cosine_bound_fails(checkpoint, tmp_path, monkeypatch):
    from zoo.plugins.tasks import embedding

    monkeypatch.setattr(embedding, "MIN_MEAN_COSINE", 1.01)  # no int8 file can reach it
    rng = random.Random(1)
    data = write(tmp_path / "pairs.csv", ["anchor", "positive"], pairs(rng, 45))
    model = spread(import_pretrained(checkpoint, head="embedding"))
    with pytest.raises(ExportMismatch, match=r"mean cosine with fp32 .* bound 1.01"):
        export_model(model, tmp_path / "x", quantize="int8", calibration_data=data, int8_methods=("dynamic",))
    assert not (tmp_path / "x").exists()


def test_a_reranker_calibrates_on_query_text_pairs_and_is_checked_by_ndcg(checkpoint, tmp_path):
    rng = random.Random(2)
    rows = [(f"{sentence(rng)}", sentence(rng, 8), label) for _ in range(40) for label in (1, 0)]
    data = write(tmp_path / "qa.csv", ["query", "text", "label"], rows)
    model = spread(import_pretrained(checkpoint, head="rerank"))
    model.spec.extra["training"] = {"train": str(data)}
    tokenizer, sizes = model.tokenizer, model.spec.sizes
    held = held_out(model, tokenizer, None, sizes, 0)
    # every calibration and check sequence is a (query, text) pair as the tokenizer encodes one
    pair_ids = {tuple(tokenizer.encode(q, t).ids) for q, t, _ in rows}
    for ids, mask in [*held.calibration, *held.check]:
        for row, m in zip(ids, mask):
            assert tuple(row[m == 1].tolist()) in pair_ids
    assert all(isinstance(t, tuple) and t[1] in (0.0, 1.0) for t in held.targets)

    manifest = export_model(model, tmp_path / "x", quantize="int8", allow_mismatch=True)
    measures = manifest["int8"]["measures"]
    assert measures["labelled"] and manifest["int8"]["max_ndcg_drop"] == pytest.approx(0.01)
    fp32 = OnnxModel(tmp_path / "x", file="model.onnx", warn=False)
    int8 = OnnxModel(tmp_path / "x", file="model.int8.onnx", warn=False)
    # the check rows again, scored by each file and ranked per query (rerank_metrics)
    queries = [t[0] for t in held.targets]
    labels = [t[1] for t in held.targets]

    def scores(runner):
        return np.concatenate([runner.logits(i, m).reshape(-1) for i, m in held.check])

    assert measures["ndcg@10_fp32"] == pytest.approx(rerank_metrics(scores(fp32), labels, queries)["ndcg@10"])
    assert measures["ndcg@10_int8"] == pytest.approx(rerank_metrics(scores(int8), labels, queries)["ndcg@10"])


def test_a_reranker_refuses_calibration_texts_without_queries(checkpoint, tmp_path):
    texts = write(tmp_path / "texts.csv", ["text"], [["the cat sat"], ["a good film"]])
    model = import_pretrained(checkpoint, head="rerank")
    model.save(tmp_path / "ce")
    result = CliRunner().invoke(
        cli,
        ["export", str(tmp_path / "ce"), "--onnx", "--quantize", "int8", "--calibration-data", str(texts)]
        + ["-o", str(tmp_path / "x")],
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --calibration-data: a rerank model calibrates int8 on its own")
    assert "no query column" in result.output and len(result.output.strip().splitlines()) == 1
