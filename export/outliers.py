"""Outlier channels kept out of int8 (the decomposition of LLM.int8(), Dettmers et al. 2022), on the ONNX graph.

A few hidden channels of a transformer carry values 10-15x larger than the rest (fine-tuned MiniLM: channel
99 after each attention LayerNorm reaches 28 where the median channel stays under 2; a few GELU outputs
reach 25). int8 with one scale per activation tensor spends its range on them and rounds every other
channel coarsely. For a MatMul whose input has such channels, ``X·W = X_rest·W + X_out·W_out``: the outlier
channels are zeroed in the input of the int8 MatMul and multiplied in fp32 by their few weight rows
(a (tokens × k)·(k × N) product, k ≤ MAX_CHANNELS), and the two results are added. The graph gains a Mul,
a Gather, a small MatMul and an Add per such MatMul; fp32 results are unchanged up to rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

MARK = "/outliers"  # in the names of the added nodes, which stay fp32 (quantize_int8 excludes them)
RATIO = 6.0  # a channel whose largest |value| is this many times the median channel's is an outlier
MAX_CHANNELS = 8


def matmuls(model) -> list:
    """MatMul nodes multiplying an activation by a 2-D weight initializer."""
    weights = {i.name: i for i in model.graph.initializer}
    return [
        n
        for n in model.graph.node
        if n.op_type == "MatMul"
        and n.input[1] in weights
        and len(weights[n.input[1]].dims) == 2
        and n.input[0] not in weights
        and MARK not in n.name
    ]


def matmul_inputs(
    source: Path, batches: Iterable[tuple[np.ndarray, np.ndarray]], names: Sequence[str] | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """For each of ``batches``: {name: values at the real tokens (tokens × channels)} of every such MatMul's
    input (or of the tensors ``names``)."""
    import onnx
    import onnxruntime as ort

    from .runtime import DISABLED_OPTIMIZERS, session_options

    model = onnx.load(str(source))
    names = sorted({node.input[0] for node in matmuls(model)}) if names is None else list(names)
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
    session = ort.InferenceSession(
        model.SerializeToString(),
        session_options(spinning=False),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=DISABLED_OPTIMIZERS,
    )
    for ids, mask in batches:
        real = mask.astype(bool)
        values = session.run(names, {"input_ids": ids, "attention_mask": mask})
        yield {
            name: value[real] if value.ndim == 3 else value.reshape(-1, value.shape[-1])
            for name, value in zip(names, values)
        }


def channel_maxima(source: Path, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """max |x| per channel of every such MatMul's input over the real tokens of ``batches``."""
    maxima: dict[str, np.ndarray] = {}
    for values in matmul_inputs(source, batches):
        for name, rows in values.items():
            value = np.abs(rows).max(axis=0)
            maxima[name] = value if name not in maxima else np.maximum(maxima[name], value)
    return maxima


def outlier_channels(maxima: np.ndarray) -> np.ndarray:
    limit = RATIO * max(float(np.median(maxima)), 1e-6)
    return np.sort([i for i in np.argsort(maxima)[::-1][:MAX_CHANNELS] if maxima[i] > limit]).astype(np.int64)


def split_outliers(source: Path, target: Path, maxima: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Write ``source`` with each MatMul's outlier input channels moved to an fp32 side product; returns
    {node name: outlier channels} for the MatMuls changed."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    weights = {i.name: i for i in model.graph.initializer}
    changed, inserts = {}, []
    for node in matmuls(model):
        amax = maxima.get(node.input[0])
        if amax is None:
            continue
        channels = outlier_channels(amax)
        if not len(channels):
            continue
        weight = numpy_helper.to_array(weights[node.input[1]])
        x, y, name = node.input[0], node.output[0], node.name + MARK
        keep = np.ones(weight.shape[0], dtype=np.float32)
        keep[channels] = 0.0
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(keep, f"{name}/keep"),
                numpy_helper.from_array(channels, f"{name}/channels"),
                numpy_helper.from_array(weight[channels], f"{name}/weight"),
            ]
        )
        before = [
            helper.make_node("Mul", [x, f"{name}/keep"], [f"{name}/rest"], name=f"{name}/zero"),
            helper.make_node(
                "Gather", [x, f"{name}/channels"], [f"{name}/x"], name=f"{name}/gather", axis=-1
            ),
            helper.make_node("MatMul", [f"{name}/x", f"{name}/weight"], [f"{name}/y"], name=f"{name}/matmul"),
        ]
        node.input[0], node.output[0] = f"{name}/rest", f"{name}/int8"
        after = helper.make_node("Add", [f"{name}/int8", f"{name}/y"], [y], name=f"{name}/add")
        inserts.append((node, before, after))
        changed[node.name] = [int(c) for c in channels]
    for node, before, after in inserts:
        nodes = list(model.graph.node)
        at = nodes.index(node)
        model.graph.node.insert(at + 1, after)
        for offset, extra in enumerate(before):
            model.graph.node.insert(at + offset, extra)
    onnx.save(model, str(target))
    return changed
