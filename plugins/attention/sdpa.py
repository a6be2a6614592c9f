"""Attention through torch.nn.functional.scaled_dot_product_attention (fused kernels on CPU and CUDA)."""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from zoo.nn import QKVAttention, RotaryEmbedding, attention_bias, scaled_dot_product


class SDPAttention(QKVAttention):
    computes_softmax_attention = True
    def __init__(self, *, d_model: int, num_heads: int, dropout: float = 0.0,
                 rotary: Optional[RotaryEmbedding] = None):
        super().__init__(d_model=d_model, num_heads=num_heads, dropout=dropout, rotary=rotary)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor]) -> Tensor:
        return scaled_dot_product(q, k, v, attention_bias(mask, q.dtype), self.active_dropout)


class GroupedQueryAttention(SDPAttention):
    """num_kv_heads=1 is multi-query attention; num_kv_heads=num_heads is plain multi-head."""

    def __init__(self, *, d_model: int, num_heads: int, dropout: float = 0.0, num_kv_heads: int = 1,
                 rotary: Optional[RotaryEmbedding] = None):
        QKVAttention.__init__(self, d_model=d_model, num_heads=num_heads, dropout=dropout,
                              num_kv_heads=num_kv_heads, rotary=rotary)
