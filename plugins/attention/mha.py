"""The tutorial's self-attention, written out: the readable reference the other variants must match."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.nn import QKVAttention, RotaryEmbedding, key_mask, padding_bias


class ExplicitAttention(QKVAttention):
    computes_softmax_attention = True

    def __init__(
        self, *, d_model: int, num_heads: int, dropout: float = 0.0, rotary: RotaryEmbedding | None = None
    ):
        super().__init__(d_model=d_model, num_heads=num_heads, dropout=dropout, rotary=rotary)
        self.attention_dropout = nn.Dropout(dropout)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, S, S)
        if mask is not None:
            scores = scores + padding_bias(key_mask(mask), scores.dtype)
        weights = self.attention_dropout(torch.softmax(scores, dim=-1))
        return weights @ v  # (B, h, S, dh)
