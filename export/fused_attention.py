"""Export softmax attention as one onnxruntime ``com.microsoft.Attention`` node.

onnxruntime's BERT fusion does not recognise the graph torch exports for our attention, so the
projections, QKᵀ, softmax and ·V stay a dozen small nodes. While exporting, every attention whose
``is_plain_softmax_attention()`` is true (sdpa and mha without rotary or grouped heads) is swapped for a
stand-in whose core is a custom torch op; the dynamo exporter translates that op into one Attention node,
with q/k/v packed into one (D, 3D) weight. The swap is undone afterwards, and the export is parity-checked like any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NAMESPACE = "zoo_export"


@torch.library.custom_op(f"{NAMESPACE}::packed_attention", mutates_args=())
def packed_attention(x: Tensor, weight: Tensor, bias: Tensor, mask: Tensor, num_heads: int) -> Tensor:
    """softmax(QKᵀ/√d + padding bias)·V with q|k|v = x·weight + bias; weight is (D, 3D). Returns (B, S, D)."""
    batch, seq, d_model = x.shape
    head_dim = d_model // num_heads
    q, k, v = (x @ weight + bias).view(batch, seq, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)
    keep = mask.bool()[:, None, None, :]
    bias_scores = torch.where(keep, 0.0, torch.finfo(x.dtype).min).to(x.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias_scores)  # (B, h, S, dh)
    return out.transpose(1, 2).reshape(batch, seq, d_model)


@packed_attention.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor, mask: Tensor, num_heads: int) -> Tensor:
    return torch.empty_like(x)


def _onnx_packed_attention(x, weight, bias, mask, num_heads: int):
    from onnxscript import opset18 as op
    from onnxscript.values import Op, Opset

    attention = Op(Opset("com.microsoft", 1), "Attention", _attention_schema())
    mask_index = op.Cast(mask, to=6)  # int32 (B, S): 1 keeps a key, 0 masks it
    return attention(
        x,
        weight,
        bias,
        mask_index,
        num_heads=num_heads,
        mask_filter_value=float(torch.finfo(torch.float32).min),
    )


def _attention_schema():
    """The part of onnxruntime's contrib-op schema the exporter needs (onnx ships none for it)."""
    from onnx.defs import OpSchema

    def param(name: str, type_str: str) -> OpSchema.FormalParameter:
        return OpSchema.FormalParameter(name, type_str)

    return OpSchema(
        "Attention",
        "com.microsoft",
        1,
        inputs=[param("input", "T"), param("weights", "T"), param("bias", "T"), param("mask_index", "M")],
        outputs=[param("output", "T")],
        type_constraints=[("T", ["tensor(float)"], ""), ("M", ["tensor(int32)"], "")],
        attributes=[
            OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, ""),
            OpSchema.Attribute("mask_filter_value", OpSchema.AttrType.FLOAT, ""),
        ],
    )


class PackedAttention(nn.Module):
    """Stand-in for a softmax attention while exporting: same weights, one packed-attention op."""

    def __init__(self, original: nn.Module):
        super().__init__()
        self.num_heads = original.num_heads
        self.out_proj = cast(nn.Linear, original.out_proj)
        projections = cast("tuple[nn.Linear, ...]", (original.q_proj, original.k_proj, original.v_proj))
        self.register_buffer("weight", torch.cat([p.weight for p in projections]).t().contiguous().detach())
        self.register_buffer("bias", torch.cat([p.bias for p in projections]).detach())

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        return self.out_proj(packed_attention(x, self.weight, self.bias, mask, self.num_heads))


def packable(module: nn.Module) -> bool:
    """An attention that says it computes exactly what the Attention op computes (zoo.nn.QKVAttention's
    ``is_plain_softmax_attention``); anything else keeps its own graph."""
    says = getattr(module, "is_plain_softmax_attention", None)
    return callable(says) and bool(says())


@contextlib.contextmanager
def packed_attentions(model: nn.Module) -> Iterator[dict]:
    """Swap packable attentions for PackedAttention while the block runs; yields the exporter's
    custom translation table (empty when nothing was swapped)."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if packable(child):
                swapped.append((parent, name, child))
    try:
        for parent, name, child in swapped:
            setattr(parent, name, PackedAttention(child))
        yield {torch.ops.zoo_export.packed_attention.default: _onnx_packed_attention} if swapped else {}
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
