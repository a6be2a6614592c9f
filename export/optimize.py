"""Graph optimisation saved offline, so serving does not redo it at every start.

First choice: onnxruntime.transformers' BERT fusions (LayerNorm, Gelu/BiasGelu, and Attention where
the graph matches its pattern; not SkipLayerNorm, whose CPU kernel is slower than the Add and
LayerNorm it replaces) on top of onnxruntime's basic optimisations. The fused graph is checked for
parity like any export; when it fails (the fusions assume BERT's shapes and some parts are not
BERT), plain onnxruntime extended optimisations are the fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .onnx_export import quiet
from .runtime import DISABLED_OPTIMIZERS

METHODS = ("transformers-fusion", "onnxruntime-extended")


def optimize(source: Path, target: Path, method: str, *, num_heads: int, d_model: int) -> dict[str, Any]:
    """Write the optimised graph of ``source`` to ``target``; returns what was fused (op -> count)."""
    with quiet():
        if method == "transformers-fusion":
            from onnxruntime.transformers.fusion_options import FusionOptions
            from onnxruntime.transformers.optimizer import optimize_model

            fusions = FusionOptions("bert")
            fusions.enable_skip_layer_norm = fusions.enable_bias_skip_layer_norm = False  # slower on CPU
            optimized = optimize_model(
                str(source),
                model_type="bert",
                num_heads=num_heads,
                hidden_size=d_model,
                opt_level=1,
                optimization_options=fusions,
            )
            fused = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
            optimized.save_model_to_file(str(target))
            return {"method": method, "fused_ops": fused}
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(
            str(source), options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
        )
    return {"method": method, "fused_ops": op_counts_delta(source, target)}


def op_counts_delta(source: Path, target: Path) -> dict[str, int]:
    """Ops that appear in ``target`` but not in ``source`` (the fused ones), with their counts."""
    import onnx

    def counts(path: Path) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in onnx.load(str(path), load_external_data=False).graph.node:
            out[node.op_type] = out.get(node.op_type, 0) + 1
        return out

    before, after = counts(source), counts(target)
    return {op: n for op, n in sorted(after.items()) if op not in before}
