"""Inference precision: ``auto`` is bf16 where the device multiplies bf16 natively and where bf16 agrees
with fp32 on the data at hand (compared as the model's task compares int8 with fp32); weights are cast to
bf16 once, so no call casts them again.

    predictor = for_inference(load_predictor(path), "auto", table, note=print)

The gate: bf16 must give the same prediction as fp32 on at least ``MIN_AGREEMENT`` of a sample of the
data (its first ``GATE_ROWS`` rows); otherwise ``auto`` stays in fp32 and says so. An explicit
``bf16`` is honoured without the gate. An export (onnxruntime) ignores the setting.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import ZooError

PRECISIONS = ("auto", "fp32", "bf16")
MIN_AGREEMENT = 0.995
GATE_ROWS = 512


def agreement(task, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> tuple[float, int]:
    """(share of predictions that agree, number compared) between two lists of per-row outputs, as the
    model's task (zoo.tasks.Task) compares them: the same comparison the int8 check makes."""
    pairs = [
        (ref[None], cand[None], np.ones((1, len(ref) if task.per_token else 1), dtype=np.int64))
        for ref, cand in zip(reference, candidate)
    ]
    result = task.agreement(pairs)
    return result["agreement"], result["compared"]


def cast_weights(model, dtype=None):
    """The model's parameters in ``dtype`` (bf16), in place, once. Buffers (rotary frequencies, ALiBi
    slopes) stay fp32: parts cast them to the activations' dtype where they use them."""
    import torch

    dtype = dtype or torch.bfloat16
    with torch.no_grad():
        for param in model.parameters():
            param.data = param.data.to(dtype)
    return model


def native_bf16(device: str) -> bool:
    """Whether ``device`` multiplies bf16 natively (a CUDA GPU that supports it; AMX or AVX512-BF16)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_bf16_supported()
    from .cpu import detect

    return detect().native_bf16


def for_inference(
    predictor,
    requested: str,
    data=None,
    *,
    batch_size: int = 64,
    note: Callable[[str], None] = lambda line: None,
    bf16_supported: bool | None = None,
) -> Any:
    """``predictor`` (a ModelPredictor in fp32 that owns its model, or an export) in the precision chosen.

    ``data``: the Table at hand; the gate compares bf16 with fp32 on its first GATE_ROWS rows (``auto``
    without data stays fp32). ``bf16_supported`` overrides the detection (tests simulate machines with it).
    """
    from .inference import ModelPredictor

    if requested not in PRECISIONS:
        raise ZooError(f"unknown precision '{requested}'; choices: {', '.join(PRECISIONS)}")
    if not isinstance(predictor, ModelPredictor):  # an export: onnxruntime runs what the file holds, no torch
        if requested == "bf16":
            note("zoo: --precision applies to model directories; the export runs as exported (onnxruntime)")
        return predictor
    from .device import isa, pick_precision

    device = predictor.device
    native = native_bf16(device) if bf16_supported is None else bf16_supported
    chosen = pick_precision(requested, device, native)
    used = isa(device, chosen)
    if chosen != "bf16":
        if requested == "auto":
            note(f"zoo: precision fp32 ({used}; no native bf16)")
        return predictor
    if requested == "bf16":
        note(f"zoo: precision bf16 ({used})" + ("" if native else ", usually slower than fp32"))
        return _bf16(predictor)
    rows = sample_ids(predictor, data) if data is not None else []
    if not rows:
        note("zoo: precision fp32 (no rows to check bf16 against)")
        return predictor
    from .inference import row_logits

    reference = row_logits(predictor, rows, batch_size)
    candidate_predictor = _bf16(predictor, copy_model=True)
    share, compared = agreement(predictor.task, reference, row_logits(candidate_predictor, rows, batch_size))
    if share < MIN_AGREEMENT:
        note(
            f"zoo: precision fp32: bf16 agreed with fp32 on {share:.1%} of {compared} predictions "
            f"(needs {MIN_AGREEMENT:.1%})"
        )
        return predictor
    note(f"zoo: precision bf16 ({used}): agrees with fp32 on {share:.1%} of {compared} predictions")
    return candidate_predictor


def sample_ids(predictor, table) -> list[np.ndarray]:
    """Token ids of the table's first GATE_ROWS rows: the gate's sample of the data at hand."""
    from .data import Table
    from .tokenizer import ids_of

    if getattr(predictor, "tokenizer", None) is None or not len(table):
        return []
    head = Table(table.source, table.texts[:GATE_ROWS], table.pairs[:GATE_ROWS] if table.pairs else None)
    task = predictor.task  # a row may be several sequences (an embedding task's pairs)
    return task.sequences(ids_of(task.inputs(predictor.tokenizer, head, predictor.max_length)))


def _bf16(predictor, copy_model: bool = False):
    from .inference import ModelPredictor

    model = copy.deepcopy(predictor.model) if copy_model else predictor.model
    return ModelPredictor(cast_weights(model), predictor.device, "bf16")
