"""Sliding-window attention: query i attends to keys j with |i - j| <= window."""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.nn import QKVAttention, RotaryEmbedding, key_mask, padding_bias, scaled_dot_product


class LocalAttention(QKVAttention):
    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        window: int = 64,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__(d_model=d_model, num_heads=num_heads, dropout=dropout, rotary=rotary)
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        self.window = window

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        positions = torch.arange(q.shape[-2], device=q.device)
        allowed = (positions[None, :] - positions[:, None]).abs() <= self.window  # (S, S)
        if mask is not None:
            allowed = allowed & key_mask(mask)  # (B, 1, S, S)
        return scaled_dot_product(q, k, v, padding_bias(allowed, q.dtype), self.active_dropout)
