"""Sensitivity-guided mixed precision: when no int8 method meets the agreement bar, keep the nodes whose
quantisation hurts most in fp32, a few more at a time, until it does.

A node's sensitivity is the int8 logit error (relative to the logits' spread, on the calibration batches)
with every quantisable node in int8 except that one: the more it falls, the more that node's int8 costs.
Embedding lookups that help go first (fp32 costs them file size, not time); then nodes are kept fp32 in
that order, 1, 2, 3, 4, 6, 8, 11, ... at a time (at most half of them), so the first passing set is close
to the smallest, and each step costs one quantisation and one check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTISABLE = dict.fromkeys(("dynamic", "per-token"), ("MatMul", "Attention", "Gather"))
STATIC_QUANTISABLE = ("MatMul", "Gather")  # com.microsoft.Attention has no QDQ form: it stays fp32 anyway
SENSITIVITY_ROWS = 64  # calibration rows each leave-one-out quantisation is scored on
MAX_FP32_SHARE = 0.5  # past half the quantisable nodes in fp32 the file is no longer an int8 model


def candidates(source, method: str) -> list[tuple[str, str]]:
    """(node name, op type) of the nodes ``method`` quantises, in graph order."""
    import onnx

    from .outliers import MARK
    from .quantize import GPTQ, fp32_table

    ops = QUANTISABLE.get(method.removesuffix(GPTQ).removesuffix("+outliers"), STATIC_QUANTISABLE)

    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {i.name: int(np.prod(i.dims)) for i in graph.initializer}
    return [
        (n.name, n.op_type)
        for n in graph.node
        if n.op_type in ops
        and n.name
        and MARK not in n.name
        and any(i in weights for i in n.input)
        and not (n.op_type == "Gather" and fp32_table(weights.get(n.input[0], 0)))
    ]  # fp32 anyway


def steps(count: int) -> list[int]:
    out, k = [], 1
    while k < count:
        out.append(k)
        k = max(k + 1, round(k * 1.4))
    return out + [count]


def rank(work, method: str, nodes: list[tuple[str, str]]) -> tuple[float, list[tuple[str, str, float]]]:
    """The all-int8 logit error, and each node with the error left when only it stays fp32, worst node first."""
    from .quantize import logit_error

    rows, sample = 0, []
    for ids, mask in work.calibration:
        if rows >= SENSITIVITY_ROWS:
            break
        sample.append((ids, mask))
        rows += len(ids)
    path = work.target.with_name(f".sensitivity.{work.target.name}")
    try:

        def error(exclude) -> float:
            work.quantize(method, path, exclude)
            return logit_error(work.fp32_run, work.make_run(path), sample)

        base = error([])
        scored = [(name, op, error([name])) for name, op in nodes]
    finally:
        path.unlink(missing_ok=True)
    # fp32 embeddings (Gather) cost file size but no time, so those that help at all go first
    return base, sorted(scored, key=lambda s: (not (s[1] == "Gather" and s[2] < base), s[2]))


def keep_fp32(work, start: dict[str, Any]) -> dict[str, Any] | None:
    """Quantise with ``start['method']`` keeping the most harmful nodes fp32, fewest first, until one passes;
    returns that trial (with 'why' for each fp32 node), or None when even the most allowed do not pass."""
    method = start["method"]
    nodes = candidates(work.graph(method), method)
    if not nodes:
        return None
    base, ranked = rank(work, method, nodes)
    why = [
        {
            "node": name,
            "op": op,
            "rank": i + 1,
            "why": f"the int8 logit error falls from {base:.3f} to {err:.3f} with only this node in fp32",
        }
        for i, (name, op, err) in enumerate(ranked)
    ]
    limit = int(len(ranked) * MAX_FP32_SHARE)
    for count in steps(limit) if limit else []:
        result = work.attempt(method, [w["node"] for w in why[:count]])
        result["why"] = why[:count]
        if result.get("passed"):
            return result
    return None
