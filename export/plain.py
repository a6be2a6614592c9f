"""Graph forms a plain onnxruntime session (default options) runs as fast as zoo's own session does.

zoo's runtime switches onnxruntime's SkipLayerNormFusion off: its CPU SkipLayerNormalization kernel measured
4-5x slower than the Add + LayerNormalization it replaces (bench/NOTES.md). A deployment that opens the file
with default options would get the slow kernel. The fusion matches an ``Add`` feeding a
``LayerNormalization``; the same sum written as the ONNX ``Sum`` op (same arithmetic, same kernel speed) is
not matched, so the file stays fast in any session.
"""

from __future__ import annotations

from pathlib import Path


def guard_layer_norm_adds(path: Path) -> int:
    """Rewrite, in place, each two-input Add that feeds a LayerNormalization as a Sum; returns how many."""
    import onnx

    model = onnx.load(str(path))
    producers = {out: node for node in model.graph.node for out in node.output}
    changed = 0
    for node in model.graph.node:
        if node.op_type == "LayerNormalization" and node.input[0] in producers:
            add = producers[node.input[0]]
            if add.op_type == "Add" and add.domain in ("", "ai.onnx") and len(add.input) == 2:
                add.op_type = "Sum"
                changed += 1
    if changed:
        onnx.save(model, str(path))
    return changed
