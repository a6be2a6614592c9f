"""int8: a model trained in the test keeps its predictions after quantisation; when plain dynamic int8 does
not, the other methods and mixed precision do, and the export fails in one line when nothing reaches the bar."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from export_fixtures import matmul_graph, sentences, trained_model

from zoo.cli import cli
from zoo.errors import ExportMismatch, ZooError
from zoo.export import export_model
from zoo.export.quantize import METHODS, agreement, best_int8, logit_error, quantize_int8
from zoo.model import build_model
from zoo.tokenizer import encode


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_a_trained_model(tmp_path):
    model, accuracy = trained_model()
    assert accuracy >= 0.95  # it learnt the task, so agreement measures something
    model.spec.extra["training"] = {"train": None}  # trained (by the fixture): judged by agreement
    model.save(tmp_path / "model")
    held_out, _ = sentences(300, seed=3)
    with open(tmp_path / "held_out.csv", "w", newline="") as f:
        csv.writer(f).writerows([["text"], *([t] for t in held_out)])
    result = CliRunner().invoke(
        cli,
        [
            "export",
            str(tmp_path / "model"),
            "--onnx",
            "--quantize",
            "int8",
            "--calibration-data",
            str(tmp_path / "held_out.csv"),
            "-o",
            str(tmp_path / "out"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    int8 = json.loads(result.stdout)["int8"]
    # one text in three calibrates, the other two thirds check agreement
    assert (int8["calibration_rows"], int8["compared"], int8["rule"]) == (100, 200, "argmax")
    assert int8["method"] == "per-token+gptq" and int8["measure"] == "agreement" and int8["fp32_nodes"] == []
    assert int8["agreement"] >= 0.99 and int8["passed"]
    assert int8["bytes"] < int8["fp32_bytes"]

    # Independently: the served int8 graph against the eager torch model on the same texts.
    from zoo.export.runtime import OnnxModel

    served = OnnxModel(tmp_path / "out")
    assert served.path.name == "model.int8.onnx"
    ids, mask = encode(served.tokenizer, held_out, max_length=served.max_length)
    with torch.no_grad():
        eager = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy().argmax(-1)
    assert (served.logits(ids, mask).argmax(-1) == eager).mean() >= 0.99
    fp32 = OnnxModel(tmp_path / "out", file="model.onnx")
    np.testing.assert_allclose(
        fp32.logits(ids, mask),
        model(torch.from_numpy(ids), torch.from_numpy(mask)).detach().numpy(),
        atol=1e-4,
        rtol=0,
    )


def _fixed(outputs):
    """A runner that returns the given logits batch by batch."""
    queue = list(outputs)
    return lambda ids, mask: queue.pop(0)


def test_agreement_rules_per_task():
    from zoo.tasks import load_task

    mask = np.array([[1, 1, 0]])
    batches = [(np.zeros((1, 3), dtype=np.int64), mask)]
    a = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])  # token logits (1, 3, 2)
    b = np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # differs at a real token and at padding
    token = agreement(_fixed([a]), _fixed([b]), batches, load_task("token-classification"))
    assert (token["agreement"], token["compared"]) == (0.5, 2)  # padding is not a prediction

    two = [(np.zeros((2, 3), dtype=np.int64), np.ones((2, 3), dtype=np.int64))]
    assert (
        agreement(
            _fixed([np.array([[2.0, 1.0], [0.0, 1.0]])]),
            _fixed([np.array([[2.0, 3.0], [0.0, 1.0]])]),
            two,
            load_task("classification"),
        )["agreement"]
        == 0.5
    )
    multi = agreement(
        _fixed([np.array([[1.0, -1.0], [1.0, 1.0]])]),
        _fixed([np.array([[1.0, 1.0], [1.0, 1.0]])]),
        two,
        load_task("multilabel"),
    )
    assert (multi["agreement"], multi["compared"]) == (0.75, 4)
    # float: within 5% of the fp32 spread (here 10 -> 0.5)
    regression = agreement(
        _fixed([np.array([[0.0], [10.0]])]), _fixed([np.array([[0.4], [11.0]])]), two, load_task("regression")
    )
    assert regression["agreement"] == 0.5


def _export(model, path, texts, **options):
    return export_model(model, path, quantize="int8", calibration_texts=texts, **options)["int8"]


@pytest.mark.slow
def test_mixed_precision_reaches_the_bar_that_plain_dynamic_int8_misses(tmp_path):
    model, _ = trained_model(steps=20)  # half-trained: near-ties that int8 noise can flip
    model.spec.extra["training"] = {"train": None}
    texts, _ = sentences(600, seed=3)
    int8 = _export(model, tmp_path / "out", texts, min_agreement=1.0)

    first = int8["tried"][0]  # the first method, every quantisable node in int8
    assert (first["method"], first["fp32_nodes"], first["passed"]) == ("per-token+gptq", [], False)
    assert first["agreement"] < 1.0
    assert int8["passed"] and int8["agreement"] == 1.0 and int8["method"] in METHODS
    kept = int8["fp32_nodes"]
    assert kept and all(k["node"] and k["op"] and "logit error falls" in k["why"] for k in kept)

    # Independently: plain dynamic int8 of the same graph flips held-out predictions; the served file flips none.
    from zoo.export.runtime import OnnxModel

    fp32 = OnnxModel(tmp_path / "out", file="model.onnx")
    quantize_int8(tmp_path / "out" / "model.onnx", tmp_path / "plain.onnx", "dynamic")
    plain, served = OnnxModel(tmp_path / "plain.onnx"), OnnxModel(tmp_path / "out")
    assert served.path.name == "model.int8.onnx"
    ids, mask = encode(fp32.tokenizer, texts, max_length=fp32.max_length)
    reference = fp32.logits(ids, mask).argmax(-1)
    assert (plain.logits(ids, mask).argmax(-1) != reference).sum() > 0
    plain_agrees = (plain.logits(ids, mask).argmax(-1) == reference).mean()
    assert (served.logits(ids, mask).argmax(-1) == reference).mean() > plain_agrees

    graph = onnx.load(str(tmp_path / "out" / "model.int8.onnx"))
    by_name = {n.name: n.op_type for n in graph.graph.node}
    assert all(by_name.get(k["node"]) == k["op"] for k in kept)  # still there, not quantised
    assert "SkipLayerNormalization" not in by_name.values() and "Sum" in by_name.values()


@pytest.mark.slow
def test_export_fails_in_one_line_naming_the_best_agreement_when_no_method_reaches_it(tmp_path, monkeypatch):
    from zoo.export import sensitivity

    monkeypatch.setattr(sensitivity, "MAX_FP32_SHARE", 0.0)  # mixed precision may keep nothing in fp32
    model, _ = trained_model(steps=20)
    model.spec.extra["training"] = {"train": None}
    texts, _ = sentences(600, seed=3)
    with pytest.raises(ExportMismatch) as failure:
        _export(model, tmp_path / "out", texts, min_agreement=1.0)
    message = str(failure.value)
    assert "\n" not in message and "no method reaches the required 100%" in message
    assert re.search(r"agree with fp32 on 99\.\d\d% of 400", message)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_untrained_head_is_exported_and_reported_by_logit_error(tmp_path):
    model = build_model(
        "transformer",
        "cls",
        labels=["a", "b", "c"],
        d_model=32,
        num_layers=1,
        num_heads=2,
        vocab_size=64,
        max_length=32,
        seed=0,
    )
    lines = []
    int8 = export_model(model, tmp_path / "out", quantize="int8", log=lines.append)["int8"]
    assert (int8["measure"], int8["passed"], int8["method"]) == ("logit_error", True, "per-token+gptq")
    assert len(int8["tried"]) == 1 and 0 <= int8["logit_error"] < 1
    assert any("head is untrained" in line for line in lines)


def test_logit_error_is_relative_to_the_spread_of_the_logits():
    batches = [(np.zeros((2, 3), dtype=np.int64), np.ones((2, 3), dtype=np.int64))]
    a = np.array([[0.0, 1.0], [2.0, 3.0]])  # std across texts: 1 per logit
    assert logit_error(_fixed([a]), _fixed([a + 0.1]), batches) == pytest.approx(0.1)


def test_unknown_int8_method_names_the_choices(tmp_path):
    with pytest.raises(ZooError, match=r"^unknown int8 method 'dynamc'; did you mean 'dynamic'\?"):
        best_int8(tmp_path / "a.onnx", tmp_path / "b.onnx", None, None, [], None, 0.99, methods=("dynamc",))


def test_per_token_int8_keeps_every_row_accurate_beside_a_spiking_one(tmp_path):
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 48)).astype(np.float32)
    x = rng.normal(size=(16, 64)).astype(np.float32)
    x[3] *= 40  # one token spikes, as [CLS]/[SEP] do in BERT-family models
    matmul_graph(tmp_path / "fp32.onnx", weight)
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "dynamic.onnx", "dynamic")
    rewritten = quantize_int8(
        tmp_path / "fp32.onnx", tmp_path / "token.onnx", "per-token", per_token_inputs={"x"}
    )
    assert rewritten == ["matmul"]

    def row_error(path):  # each row's error relative to that row's own fp32 values
        y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        reference = x.astype(np.float64) @ weight
        return np.abs(y - reference).max(axis=1) / np.abs(reference).max(axis=1)

    token, dynamic = row_error(tmp_path / "token.onnx"), row_error(tmp_path / "dynamic.onnx")
    quiet = np.arange(16) != 3
    assert token.max() < 0.03  # int8 with the row's own scale: ~1/127 of each row's range
    assert (
        dynamic[quiet].mean() > 5 * token[quiet].mean()
    )  # one shared scale: the spike sets every row's step
    graph = onnx.load(str(tmp_path / "token.onnx"))
    assert {i.name: i.data_type for i in graph.graph.initializer}.get("w") is None  # the fp32 weight is gone
    assert "MatMulIntegerToFloat" in {n.op_type for n in graph.graph.node}


@pytest.mark.slow
def test_per_token_int8_reaches_the_bar_plain_dynamic_misses_on_spiking_tokens(tmp_path):
    model, _ = trained_model(steps=40)
    model.spec.extra["training"] = {"train": None}
    vocab = model.tokenizer.get_vocab()
    with torch.no_grad():  # three frequent words become tokens whose FFN input spikes in channel 5
        for word in ("w7", "w11", "w9"):
            row = model.encoder.token_embedding.weight[vocab[word]]
            row.zero_()
            row[5] = 5.0
        model.encoder.blocks[0].norm1.weight[5] *= 12
    texts, _ = sentences(600, seed=3)
    int8 = _export(model, tmp_path / "out", texts, min_agreement=1.0, int8_methods=("dynamic", "per-token"))

    dynamic, token = int8["tried"][:2]
    assert (dynamic["method"], dynamic["passed"], token["method"]) == ("dynamic", False, "per-token")
    assert token["logit_error"] < dynamic["logit_error"]
    assert int8["method"] == "per-token" and int8["passed"] and int8["agreement"] == 1.0
    assert int8["fp32_nodes"] == []
    # only the FFN input spikes (the attention output does not): one MatMul gets per-token scales
    assert len(int8["per_token_nodes"]) == 1
    graph = onnx.load(str(tmp_path / "out" / "model.int8.onnx"))
    assert sum(n.op_type == "MatMulIntegerToFloat" for n in graph.graph.node) == 1


@pytest.mark.slow
def test_a_model_trained_with_evaluation_data_is_checked_on_it_and_calibrated_on_its_training_data(tmp_path):
    model, _ = trained_model(steps=40)
    train, _ = sentences(90, seed=4)
    held_out, _ = sentences(50, seed=5)
    for name, texts in (("train", train), ("eval", held_out)):
        with open(tmp_path / f"{name}.csv", "w", newline="") as f:
            csv.writer(f).writerows([["text", "label"], *([t, "pos"] for t in texts)])
    model.spec.extra["training"] = {"train": str(tmp_path / "train.csv"), "eval": str(tmp_path / "eval.csv")}
    int8 = export_model(model, tmp_path / "out", quantize="int8", int8_methods=("dynamic",))["int8"]
    assert (
        int8["texts"] == "training data calibrates, evaluation data checks: 90 calibrate, 50 check agreement"
    )
    assert (int8["calibration_rows"], int8["compared"]) == (90, 50)

    del model.spec.extra["training"][
        "eval"
    ]  # without it, the training texts are split: one in three calibrates
    int8 = export_model(model, tmp_path / "out2", quantize="int8", int8_methods=("dynamic",))["int8"]
    assert (int8["calibration_rows"], int8["compared"]) == (30, 60)
