"""GPTQ weight rounding (Frantar et al. 2022, "GPTQ: accurate post-training quantization"): int8 weights chosen
for the layer's output on real text, not each weight on its own.

Rounding each weight to its nearest int8 step treats the errors of a column as independent, but the inputs of
a MatMul are correlated, so errors in correlated rows add up in the output. GPTQ rounds the rows of W (the
input channels) one at a time, most active first, and after each row moves its rounding error onto the rows
not yet rounded, in the proportions that minimise ``‖X·W − X·Ŵ‖²`` over the calibration activations X
(through the Cholesky factor of ``(XᵀX + λI)⁻¹``; "optimal brain quantization"). With uncorrelated inputs
(``XᵀX`` diagonal) nothing moves and the result is round-to-nearest.

The scales stay those onnxruntime's quantiser picks (symmetric, per output column: ``max|w| / 127``), so the
int8 graph, and its speed, are unchanged: only the int8 values differ. The rounded weights go into the fp32
graph as ``q · scale`` (each column's largest weight keeps ±127, so the quantiser finds the same scale again
and rounds every value back to ``q`` exactly), and any int8 method quantises that graph as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

QMAX = 127  # onnxruntime's symmetric int8 weights: [-127, 127], scale max|w| / 127 (no reduce_range)
DAMPING = 0.01  # λ: this share of the mean diagonal of XᵀX, so the inverse exists and stays well conditioned
BLOCK = 128  # rows rounded between two updates of the rest (the "lazy batch" form: the same result, faster)


def scales(weight: np.ndarray) -> np.ndarray:
    """Symmetric per-column scales as onnxruntime's int8 quantiser computes them."""
    absmax = np.abs(weight.astype(np.float64)).max(axis=0)
    return np.where(absmax > 0, absmax / QMAX, 1.0).astype(np.float32)


def nearest(weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Round-to-nearest int8 with the given per-column scales (ties to even, as onnxruntime rounds)."""
    return np.clip(np.rint(weight / scale), -QMAX, QMAX).astype(np.int8)


def gptq(
    weight: np.ndarray, hessian: np.ndarray, scale: np.ndarray, *, damping: float | None = None
) -> np.ndarray:
    """int8 values for ``weight`` (K inputs × N outputs) with per-column ``scale``, chosen to keep ``X·W`` on
    activations whose ``XᵀX`` is ``hessian`` (K × K). Each column's largest |weight| keeps ±QMAX (so the scale
    of the result is ``scale``); rows whose input is always zero are rounded to nearest."""
    w = weight.astype(np.float64)
    h = hessian.astype(np.float64).copy()
    s = scale.astype(np.float64)
    k = w.shape[0]
    diagonal = np.diag(h).copy()
    dead = diagonal <= 0
    h[dead, :], h[:, dead] = 0.0, 0.0
    h[dead, dead] = 1.0  # no input, no output error: rounded to nearest, nothing moves through them
    order = np.argsort(-np.diag(h), kind="stable")  # most active inputs first ("act order")
    w, h = w[order].copy(), h[np.ix_(order, order)]
    h[np.diag_indices(k)] += (DAMPING if damping is None else damping) * float(np.mean(np.diag(h)))
    upper = inverse_factor(h)
    pinned = np.abs(w).argmax(axis=0)  # per column: the row whose weight sets the scale
    keep = np.sign(w[pinned, np.arange(w.shape[1])]) * QMAX
    q = np.empty(w.shape, dtype=np.int8)
    for start in range(0, k, BLOCK):
        stop = min(start + BLOCK, k)
        block, u = w[start:stop], upper[start:stop, start:stop]
        errors = np.empty_like(block)
        for i in range(stop - start):
            row = start + i
            values = np.clip(np.rint(block[i] / s), -QMAX, QMAX)
            fixed = pinned == row
            values[fixed] = keep[fixed]
            q[row] = values
            errors[i] = (block[i] - values * s) / u[i, i]
            block[i + 1 :] -= np.outer(u[i, i + 1 :], errors[i])
        w[stop:] -= upper[start:stop, stop:].T @ errors
    out = np.empty_like(q)
    out[order] = q
    return out


def inverse_factor(h: np.ndarray) -> np.ndarray:
    """The upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU): row i holds how row i's error spreads over the rows
    after it. torch's LAPACK (one thread) is ~5x numpy's here at K = 1536."""
    import torch

    factor = torch.linalg.cholesky(torch.from_numpy(h))
    return torch.linalg.cholesky(torch.cholesky_inverse(factor), upper=True).numpy()


def weighted_nodes(model) -> list[tuple]:
    """(node, weight initializer) of the nodes whose weights int8 rounds: MatMuls of an activation by a 2-D
    weight, and com.microsoft.Attention's fused QKV weight."""
    from .outliers import matmuls

    weights = {i.name: i for i in model.graph.initializer}
    matmul = {n.output[0] for n in matmuls(model)}
    return [
        (n, weights[n.input[1]])
        for n in model.graph.node
        if n.output[0] in matmul
        or (
            n.op_type == "Attention"
            and len(n.input) > 1
            and len(getattr(weights.get(n.input[1]), "dims", ())) == 2
        )
    ]


def hessians(
    source: Path, batches: Iterable[tuple[np.ndarray, np.ndarray]], names: Sequence[str]
) -> dict[str, np.ndarray]:
    """XᵀX (float64) of each tensor in ``names`` (the weighted nodes' inputs) over the real tokens of
    ``batches``: float32 products per batch (2x float64's speed), summed in float64."""
    from .outliers import matmul_inputs

    out: dict[str, np.ndarray] = {}
    for values in matmul_inputs(source, batches, names):
        for name, rows in values.items():
            x = rows.astype(np.float32)
            out[name] = out.get(name, 0) + (x.T @ x).astype(np.float64)
    return out


def rounded_weights(source: Path, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """{weight initializer: GPTQ-rounded weights as ``q · scale`` (float32)} for every weighted node of
    ``source`` whose weight no other node reads, from its input's activations on ``batches``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in set(node.input):
            readers[name] = readers.get(name, 0) + 1
    nodes = weighted_nodes(model)
    h = hessians(source, batches, sorted({node.input[0] for node, _ in nodes}))
    out = {}
    for node, initializer in nodes:
        if readers[initializer.name] != 1 or node.input[0] not in h:
            continue
        weight = numpy_helper.to_array(initializer).astype(np.float32)
        scale = scales(weight)
        out[initializer.name] = gptq(weight, h[node.input[0]], scale).astype(np.float32) * scale
    return out


def write_rounded(
    source: Path,
    target: Path,
    weights: dict[str, np.ndarray],
    exclude: Sequence[str] = (),
    fp32_ops: Sequence[str] = (),
) -> int:
    """Write ``source`` with its weights replaced by ``weights`` (rounded_weights), except those of the nodes
    named in ``exclude`` or of a type in ``fp32_ops`` (kept fp32, so they keep their own weights); returns how
    many were replaced."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    kept = {
        node.input[1]
        for node, _ in weighted_nodes(model)
        if node.name in set(exclude) or node.op_type in fp32_ops
    }
    replaced = 0
    for i, initializer in enumerate(model.graph.initializer):
        if initializer.name in weights and initializer.name not in kept:
            model.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(weights[initializer.name], initializer.name)
            )
            replaced += 1
    onnx.save(model, str(target))
    return replaced
