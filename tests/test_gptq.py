"""GPTQ weight rounding (export/gptq.py): int8 weights chosen for the layer's output, with onnxruntime's own
scales. References: onnxruntime's quantiser (its int8 weights and scales are round-to-nearest's), a direct
computation of the output error, and the textbook form of the update (optimal brain quantization: the inverse
Hessian updated row by row), which the Cholesky and block form must reproduce."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from export_fixtures import matmul_graph
from onnx import numpy_helper

from zoo.export.gptq import QMAX, gptq, nearest, rounded_weights, scales, write_rounded
from zoo.export.quantize import quantize_int8


def _onnxruntime_int8(path):
    """(int8 weight, per-column scale) onnxruntime's dynamic quantiser writes for the one MatMul in ``path``."""
    model = onnx.load(str(path))
    (node,) = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert not values["w_zero_point"].any()  # symmetric
    return values[node.input[1]], values["w_scale"]


def _correlated(rng, rows: int, k: int) -> np.ndarray:
    """Activations whose channels are correlated (mixed from a few sources) and differ in scale."""
    mix = rng.normal(size=(k // 4, k))
    x = rng.normal(size=(rows, k // 4)) @ mix + 0.05 * rng.normal(size=(rows, k))
    return (x * rng.uniform(0.2, 3.0, size=k)).astype(np.float32)


def _reference_obq(weight, hessian, scale, order):
    """GPTQ as first written: quantise one row at a time in ``order``, spread its error over the remaining rows
    with the inverse Hessian of those rows, then drop the row from that inverse (Gaussian elimination)."""
    w = weight.astype(np.float64).copy()
    h = hessian.astype(np.float64) + 0.01 * np.mean(np.diag(hessian)) * np.eye(len(hessian))
    inverse = np.linalg.inv(h)
    pinned = np.abs(w).argmax(axis=0)
    q = np.zeros(w.shape, dtype=np.int64)
    left = list(order)
    while left:
        i = left.pop(0)
        values = np.clip(np.rint(w[i] / scale), -QMAX, QMAX)
        values[pinned == i] = np.sign(weight[i, pinned == i]) * QMAX
        q[i] = values
        error = (w[i] - values * scale) / inverse[i, i]
        w[left] -= np.outer(inverse[left, i], error)
        inverse -= np.outer(inverse[:, i], inverse[i, :]) / inverse[i, i]
    return q


def test_gptq_lowers_the_output_error_of_round_to_nearest_with_onnxruntimes_scales(tmp_path):
    rng = np.random.default_rng(0)
    k, n = 96, 40
    weight = rng.normal(size=(k, n)).astype(np.float32)
    x = _correlated(rng, 2000, k)
    matmul_graph(tmp_path / "fp32.onnx", weight)
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", "dynamic")
    ort_q, ort_scale = _onnxruntime_int8(tmp_path / "int8.onnx")
    # onnxruntime: symmetric, one scale per output column, [-127, 127], round to nearest
    np.testing.assert_allclose(ort_scale, scales(weight), rtol=1e-6)
    np.testing.assert_array_equal(ort_q, nearest(weight, ort_scale))

    q = gptq(weight, x.T.astype(np.float64) @ x, ort_scale)
    assert q.dtype == np.int8 and q.min() >= -QMAX and q.max() <= QMAX
    np.testing.assert_array_equal(np.abs(q).max(axis=0), QMAX)  # so the scale of the result is the same

    def output_error(values):
        return np.linalg.norm(x.astype(np.float64) @ weight - x @ (values * ort_scale.astype(np.float64)))

    assert output_error(q) < 0.7 * output_error(ort_q)
    # ... which is what it is for: the weights alone are further from W than round-to-nearest's
    assert np.abs(q * ort_scale - weight).mean() > np.abs(ort_q * ort_scale - weight).mean()


def test_uncorrelated_inputs_give_round_to_nearest():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(48, 24)).astype(np.float32)
    scale = scales(weight)
    np.testing.assert_array_equal(gptq(weight, np.eye(48), scale), nearest(weight, scale))
    # orthogonal input channels of different sizes: XᵀX diagonal, nothing to trade between rows
    x = np.diag(rng.uniform(0.5, 4.0, size=48))
    np.testing.assert_array_equal(gptq(weight, x.T @ x, scale), nearest(weight, scale))
    # an input channel that is always zero: its row is rounded to nearest and moves nothing
    x = _correlated(rng, 500, 48)
    x[:, 7] = 0
    np.testing.assert_array_equal(
        gptq(weight, x.T.astype(np.float64) @ x, scale)[7], nearest(weight, scale)[7]
    )


def test_the_block_form_equals_the_textbook_update():
    rng = np.random.default_rng(2)
    k = 300  # more than one block of 128 rows
    weight = rng.normal(size=(k, 20)).astype(np.float32)
    x = _correlated(rng, 3000, k).astype(np.float64)
    h = x.T @ x
    order = np.argsort(-np.diag(h), kind="stable")
    q = gptq(weight, h, scales(weight))
    reference = _reference_obq(weight, h, scales(weight).astype(np.float64), order)
    assert (q == reference).mean() > 0.999  # the same rounding decisions, up to ties at float precision


def test_rounded_weights_pass_through_onnxruntimes_quantiser_unchanged(tmp_path, monkeypatch):
    from zoo.export import gptq as module

    rng = np.random.default_rng(3)
    weight = rng.normal(size=(64, 32)).astype(np.float32)
    x = _correlated(rng, 400, 64)
    matmul_graph(tmp_path / "fp32.onnx", weight)
    h = x.T.astype(np.float64) @ x
    # a bare MatMul graph has no input_ids to calibrate on: its input's XᵀX is given
    monkeypatch.setattr(module, "hessians", lambda source, batches, names: {"x": h})
    rounded = rounded_weights(tmp_path / "fp32.onnx", [])
    assert set(rounded) == {"w"}
    assert write_rounded(tmp_path / "fp32.onnx", tmp_path / "gptq.onnx", rounded) == 1
    quantize_int8(tmp_path / "gptq.onnx", tmp_path / "int8.onnx", "dynamic")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "plain.onnx", "dynamic")
    q, scale = _onnxruntime_int8(tmp_path / "int8.onnx")
    _, plain_scale = _onnxruntime_int8(tmp_path / "plain.onnx")
    np.testing.assert_array_equal(scale, plain_scale)  # the same scales: only the int8 values differ
    np.testing.assert_array_equal(q, gptq(weight, h, plain_scale))
    # a node kept fp32 keeps its own weights
    write_rounded(tmp_path / "fp32.onnx", tmp_path / "kept.onnx", rounded, exclude=["matmul"])
    kept = {
        i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "kept.onnx")).graph.initializer
    }
    np.testing.assert_array_equal(kept["w"], weight)


@pytest.mark.slow
def test_export_records_gptq_weights_and_moves_the_logits_no_more_than_rounding_to_nearest(tmp_path):
    from export_fixtures import sentences, trained_model

    from zoo.export import export_model
    from zoo.export.runtime import OnnxModel
    from zoo.tokenizer import encode

    model, _ = trained_model(steps=40)
    model.spec.extra["training"] = {"train": None}
    texts, _ = sentences(300, seed=3)
    gptq_int8 = export_model(model, tmp_path / "gptq", quantize="int8", calibration_texts=texts)["int8"]
    plain = export_model(
        model, tmp_path / "plain", quantize="int8", calibration_texts=texts, int8_methods=("per-token",)
    )["int8"]
    assert (gptq_int8["method"], gptq_int8["weights"], gptq_int8["embeddings"]) == (
        "per-token+gptq",
        "gptq",
        "fp32",
    )
    assert (plain["method"], plain["weights"]) == ("per-token", "nearest")
    assert gptq_int8["passed"] and gptq_int8["logit_error"] <= plain["logit_error"]

    # the same graph and scales; only int8 weight values differ (the tiny model's tables are small: fp32)
    a, b = (onnx.load(str(tmp_path / d / "model.int8.onnx")).graph for d in ("gptq", "plain"))
    assert [(n.op_type, list(n.input)) for n in a.node] == [(n.op_type, list(n.input)) for n in b.node]
    values_a = {i.name: numpy_helper.to_array(i) for i in a.initializer}
    values_b = {i.name: numpy_helper.to_array(i) for i in b.initializer}
    changed = [k for k in values_a if not np.array_equal(values_a[k], values_b[k])]
    assert changed and all(values_a[k].dtype == np.int8 for k in changed)
    assert "Gather" in {n.op_type for n in a.node} and not any(
        values_a[n.input[0]].dtype == np.int8
        for n in a.node
        if n.op_type == "Gather" and n.input[0] in values_a
    )

    # independently of the export's own check: on texts it never saw, against the fp32 file
    fresh, _ = sentences(200, seed=9)
    fp32 = OnnxModel(tmp_path / "gptq", file="model.onnx")
    ids, mask = encode(fp32.tokenizer, fresh, max_length=fp32.max_length)
    reference = fp32.logits(ids, mask)
    errors = [np.abs(OnnxModel(tmp_path / d).logits(ids, mask) - reference).mean() for d in ("gptq", "plain")]
    assert errors[0] <= errors[1]


@pytest.mark.slow
def test_static_int8_keeps_the_fp32_attentions_own_weights_and_every_weight_scale(tmp_path):
    from export_fixtures import sentences, trained_model

    from zoo.export import export_model

    model, _ = trained_model(steps=40)
    model.spec.extra["training"] = {"train": None}
    texts, _ = sentences(200, seed=3)
    values = {}
    for method in ("static-minmax+outliers+gptq", "static-minmax+outliers"):
        int8 = export_model(
            model, tmp_path / method, quantize="int8", calibration_texts=texts, int8_methods=(method,)
        )["int8"]
        assert int8["weights"] == ("gptq" if method.endswith("gptq") else "nearest")
        graph = onnx.load(str(tmp_path / method / "model.int8.onnx")).graph
        values[method] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        weights = {
            n.input[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in values[method]
        }
        (attention,) = [n for n in graph.node if n.op_type == "Attention"]  # no QDQ form: fp32
    gptq_values, plain = values.values()
    np.testing.assert_array_equal(gptq_values[attention.input[1]], plain[attention.input[1]])
    assert weights and any(not np.array_equal(gptq_values[w], plain[w]) for w in weights)
    for w in weights:  # the int8 weights' scales are onnxruntime's, whatever the rounding
        np.testing.assert_array_equal(
            gptq_values[w.replace("_quantized", "_scale")], plain[w.replace("_quantized", "_scale")]
        )
