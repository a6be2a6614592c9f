"""torch -> ONNX: the dynamo exporter with dynamic batch and sequence axes, or the TorchScript-based one.

Either way the graph must pass ``onnx.checker`` and keep the contract: int64 inputs ``input_ids`` and
``attention_mask`` with symbolic (not fixed) batch and sequence dims, and the outputs the model's task names
(``Task.output_names``: ``logits`` for the classifiers, ``sentence_embedding`` for embeddings).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from .runtime import INPUT_NAMES, OUTPUT_NAME

Outputs = tuple[str, ...]

EXPORTERS = ("dynamo", "torchscript")
LEGACY_DEFAULT_OPSET = 17  # the TorchScript-based exporter's well-tested opset


class ExportFailed(Exception):
    """The exporter raised or produced a graph that breaks the contract; the message says which."""


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence exporter chatter (missing torchvision ops, tracer and deprecation warnings, and what libraries
    print: onnxruntime 1.30's optimiser prints "failed in shape inference" to stdout, which would break
    `zoo export --json`)."""
    loggers = [
        logging.getLogger(name)
        for name in (
            "",
            "torch.onnx",
            "torch.export",
            "torch._dynamo",
            "torch.fx.experimental.symbolic_shapes",
            "onnxscript",
            "onnxruntime",
        )
    ]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def export_dynamo(
    model: nn.Module,
    example: tuple[torch.Tensor, torch.Tensor],
    path: Path,
    opset: int | None,
    max_length: int,
    fuse_attention: bool = True,
    outputs: Outputs = (OUTPUT_NAME,),
) -> None:
    """``fuse_attention``: built-in softmax attentions become one com.microsoft.Attention node each."""
    from .fused_attention import packed_attentions

    batch = torch.export.Dim("batch", min=1, max=4096)
    sequence = torch.export.Dim("sequence", min=1, max=max_length)
    dims = {0: batch, 1: sequence}
    swap: contextlib.AbstractContextManager[dict] = (
        packed_attentions(model) if fuse_attention else contextlib.nullcontext({})
    )
    with quiet(), swap as translations:
        program = torch.onnx.export(
            model,
            example,
            None,
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=list(outputs),
            dynamic_shapes={"input_ids": dims, "attention_mask": dims},
            opset_version=opset,
            verbose=False,
            optimize=True,
            custom_translation_table=translations or None,
        )
        assert program is not None  # dynamo=True returns the program
        program.save(str(path))


def export_torchscript_based(
    model: nn.Module,
    example: tuple[torch.Tensor, torch.Tensor],
    path: Path,
    opset: int | None,
    outputs: Outputs = (OUTPUT_NAME,),
) -> None:
    axes = {0: "batch", 1: "sequence"}
    with quiet():
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=list(outputs),
            dynamic_axes={"input_ids": axes, "attention_mask": axes},
            opset_version=opset or LEGACY_DEFAULT_OPSET,
            do_constant_folding=True,
        )


def check_graph(path: Path, outputs: Outputs = (OUTPUT_NAME,)) -> int:
    """onnx.checker plus the I/O contract; returns the default-domain opset of the graph."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportFailed(f"onnx.checker rejected the graph: {str(exc).splitlines()[0]}") from exc
    graph_model = onnx.load(str(path), load_external_data=False)
    inputs = list(graph_model.graph.input)
    if tuple(i.name for i in inputs) != INPUT_NAMES:
        raise ExportFailed(f"graph inputs are {[i.name for i in inputs]}, expected {list(INPUT_NAMES)}")
    for tensor in inputs:
        if tensor.type.tensor_type.elem_type != onnx.TensorProto.INT64:
            raise ExportFailed(f"input '{tensor.name}' is not int64")
        dims = tensor.type.tensor_type.shape.dim
        if len(dims) != 2 or any(d.HasField("dim_value") for d in dims):
            fixed = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
            raise ExportFailed(f"input '{tensor.name}' has shape {fixed}; batch and sequence must be dynamic")
    found = [o.name for o in graph_model.graph.output]
    if list(outputs) != found:
        raise ExportFailed(f"graph outputs are {found}, expected {list(outputs)}")
    return next((o.version for o in graph_model.opset_import if o.domain in ("", "ai.onnx")), 0)


def export_onnx(
    model: nn.Module,
    example: tuple[torch.Tensor, torch.Tensor],
    path: Path,
    *,
    exporter: str,
    opset: int | None,
    max_length: int,
    outputs: Outputs = (OUTPUT_NAME,),
) -> int:
    """Export with one exporter and check the graph; returns its opset. Raises ExportFailed."""
    try:
        if exporter == "dynamo":
            export_dynamo(model, example, path, opset, max_length, outputs=outputs)
        else:
            export_torchscript_based(model, example, path, opset, outputs)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportFailed(f"{exporter} exporter failed: {type(exc).__name__}: {first}") from exc
    drop_initializer_shapes(path)
    return check_graph(path, outputs)


def drop_initializer_shapes(path: Path) -> None:
    """Remove the value_info entries the exporter writes for initializers (a weight's shape is in the weight).
    onnxruntime 1.30's quantiser transposes a Gemm's weight and then runs shape inference, which fails on
    the stale entry ("Inferred shape and existing shape differ"), so without this no int8 file could be made
    from the export, by zoo or by a user running onnxruntime's quantiser on it."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    kept = [v for v in model.graph.value_info if v.name not in weights]
    if len(kept) < len(model.graph.value_info):
        del model.graph.value_info[:]
        model.graph.value_info.extend(kept)
        onnx.save(model, str(path))
