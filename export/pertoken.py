"""Per-token int8: each MatMul's input quantised with one scale per row (token), not one per tensor.

onnxruntime's dynamic quantisation gives a whole activation tensor one uint8 range per call, so the few
tokens whose values spike ([CLS], [SEP], full stops: 28 where the typical token stays under 3 after the
attention LayerNorm of MiniLM) set the step for every token. Here each row gets its own symmetric scale
``s = max|x_row| / 127``; ``round(x / s) + 128`` fits uint8 with one shared zero point (128), which is what
``MatMulInteger`` takes, and the int32 product is scaled back by ``s`` per row and the weight's scale per
column. Weights are int8, symmetric, per output column. Everything else (the fused attention, embedding
lookups) is quantised by onnxruntime's dynamic quantiser as before. On the demo's fine-tuned MiniLM this
took held-out agreement with fp32 from 98.3% (per tensor, outlier channels split off) to 99.3% at the same
speed (bench/NOTES.md, issue 17).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

MARK = "/per_token"  # in the names of the nodes a rewritten MatMul becomes
# A MatMul input gets per-token scales when its largest row (max |x| over a token) is this many times the
# median row's on the calibration text; the rest keep onnxruntime's fused per-tensor kernel, which is faster
# (fine-tuned MiniLM: LayerNorm and GELU outputs 4-10, attention outputs 2-3).
ROW_SPREAD = 4.0


def spiky_inputs(source: Path, batches) -> set[str]:
    """The MatMul inputs of ``source`` whose rows spread by ROW_SPREAD or more over ``batches``."""
    from .outliers import matmul_inputs

    row_maxima: dict[str, list[np.ndarray]] = {}
    for values in matmul_inputs(source, batches):
        for name, rows in values.items():
            row_maxima.setdefault(name, []).append(np.abs(rows).max(axis=1))
    spiky = set()
    for name, parts in row_maxima.items():
        rows = np.concatenate(parts)
        if len(rows) and rows.max() >= ROW_SPREAD * max(float(np.median(rows)), 1e-6):
            spiky.add(name)
    return spiky


def quantize_per_token(
    source: Path, target: Path, inputs: set[str], exclude: Sequence[str] = ()
) -> list[str]:
    """Write ``source`` with the MatMuls that read one of ``inputs`` (but those in ``exclude``) per-token int8
    and the rest quantised dynamically; returns the MatMuls rewritten."""
    import onnx

    from .outliers import matmuls
    from .quantize import quantize_dynamic_int8

    names = [
        n.name
        for n in matmuls(onnx.load(str(source), load_external_data=False))
        if n.input[0] in inputs and n.name not in exclude
    ]
    quantize_dynamic_int8(source, target, [*exclude, *names])
    model = onnx.load(str(target))
    rewrite(model, set(names))
    onnx.save(model, str(target))
    return names


def rewrite(model, names: set[str]) -> None:
    """Replace each MatMul named in ``names`` (activation × 2-D weight initializer) by its per-token form."""
    from onnx import helper, numpy_helper

    if not names:
        return
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    axes_as_input = opset >= 18  # ReduceMax/ReduceMin took axes as an attribute before opset 18
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    shared: dict[str, np.ndarray] = {
        f"{MARK}/zero_point": np.array(128, np.uint8),
        f"{MARK}/inv127": np.array(1 / 127, np.float32),
        f"{MARK}/tiny": np.array(1e-8, np.float32),
        f"{MARK}/last": np.array([-1], np.int64),
        f"{MARK}/first": np.array([0], np.int64),
        f"{MARK}/column": np.array([-1, 1], np.int64),
        f"{MARK}/one": np.array(1.0, np.float32),
    }
    zp, inv127, tiny, last, first, column, one = shared
    constants: dict[str, np.ndarray] = dict(shared)
    nodes = []
    for node in graph.node:
        if node.name not in names:
            nodes.append(node)
            continue
        x, w, (y,) = node.input[0], node.input[1], node.output
        p = node.name + MARK
        weight = numpy_helper.to_array(weights[w]).astype(np.float32)
        w_scale = (np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127).astype(np.float32)
        constants.update(
            {
                f"{p}/weight": np.clip(np.round(weight / w_scale), -127, 127).astype(np.int8),
                f"{p}/weight_scale": w_scale,
                f"{p}/rows": np.array([-1, weight.shape[0]], np.int64),
            }
        )

        def op(kind: str, inputs: list[str], output: str, p=p, **attrs) -> None:
            nodes.append(
                helper.make_node(kind, inputs, [output], name=f"{p}/{output.rsplit('/', 1)[-1]}", **attrs)
            )

        # one scale per row: max(|max|, |min|) / 127 over the last axis
        for reduce in ("Max", "Min"):
            if axes_as_input:
                op(f"Reduce{reduce}", [x, last], f"{p}/{reduce.lower()}", keepdims=1)
            else:
                op(f"Reduce{reduce}", [x], f"{p}/{reduce.lower()}", keepdims=1, axes=[-1])
        op("Neg", [f"{p}/min"], f"{p}/neg_min")
        op("Max", [f"{p}/max", f"{p}/neg_min", tiny], f"{p}/absmax")
        op("Mul", [f"{p}/absmax", inv127], f"{p}/scale")
        # (…, K) -> (rows, K), quantised per row (axis 0) around the shared zero point
        op("Reshape", [x, f"{p}/rows"], f"{p}/x2")
        op("Reshape", [f"{p}/scale", last], f"{p}/row_scale")
        op("Shape", [f"{p}/row_scale"], f"{p}/row_count")
        op("Expand", [zp, f"{p}/row_count"], f"{p}/row_zero_point")
        op("QuantizeLinear", [f"{p}/x2", f"{p}/row_scale", f"{p}/row_zero_point"], f"{p}/q", axis=0)
        # the int32 product times each column's weight scale, in the GEMM's own epilogue, then each row's
        op(
            "MatMulIntegerToFloat",
            [f"{p}/q", f"{p}/weight", one, f"{p}/weight_scale", zp],
            f"{p}/column_scaled",
            domain="com.microsoft",
        )
        op("Reshape", [f"{p}/scale", column], f"{p}/scale_column")
        op("Mul", [f"{p}/column_scaled", f"{p}/scale_column"], f"{p}/y2")
        # back to (…, N)
        op("Shape", [x], f"{p}/x_shape")
        op("Slice", [f"{p}/x_shape", first, last], f"{p}/leading")
        op("Concat", [f"{p}/leading", last], f"{p}/y_shape", axis=0)
        nodes.append(helper.make_node("Reshape", [f"{p}/y2", f"{p}/y_shape"], [y], name=f"{p}/reshape"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]  # the fp32 weights the int8 ones replace go
    del graph.initializer[:]
    graph.initializer.extend([*kept, *(numpy_helper.from_array(v, k) for k, v in constants.items())])
