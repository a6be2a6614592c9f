"""Sigmoid self-attention (Ramapuram et al., "Theory, Analysis, and Best Practices for Sigmoid
Self-Attention", 2024): each weight is an independent sigmoid instead of a softmax over the row,

    out = σ(QKᵀ/√d + b)·V,   b = −log n,

where n is the number of keys. Here n counts the *real* keys of each row, so padding a sequence does not
change its outputs (the paper's n is the full sequence length, which would). Padded keys get weight 0.

Built on zoo.nn.QKVAttention, which owns the q/k/v/out projections, grouped key/value heads
(`num_kv_heads`) and rotary positions (capability 'rotary': the prenorm encoder passes `rotary=`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.nn import QKVAttention, RotaryEmbedding


class SigmoidAttention(QKVAttention):
    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: float | None = None,
        num_kv_heads: int | None = None,
        rotary: RotaryEmbedding | None = None,
    ):
        """``bias`` fixes b for every row; None (the paper's default) uses −log(number of real keys)."""
        super().__init__(
            d_model=d_model, num_heads=num_heads, dropout=dropout, num_kv_heads=num_kv_heads, rotary=rotary
        )
        if bias is not None and not math.isfinite(bias):
            raise ValueError(f"bias must be a finite number or None, got {bias}")
        self.bias = bias
        self.attention_dropout = nn.Dropout(dropout)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, S, S)
        weights = torch.sigmoid(scores + self.row_bias(mask, scores))
        if mask is not None:  # padded keys contribute nothing
            weights = weights * mask[:, None, None, :].to(weights.dtype)
        return self.attention_dropout(weights) @ v  # (B, h, S, dh)

    def row_bias(self, mask: Tensor | None, scores: Tensor) -> Tensor:
        """b per batch row, shaped (B, 1, 1, 1): the fixed bias, or −log(number of real keys)."""
        if self.bias is not None:
            return torch.full((scores.shape[0], 1, 1, 1), self.bias, dtype=scores.dtype, device=scores.device)
        if mask is None:
            keys = torch.full((scores.shape[0],), scores.shape[-1], dtype=scores.dtype, device=scores.device)
        else:
            keys = mask.to(scores.dtype).sum(dim=-1).clamp(min=1.0)
        return -torch.log(keys)[:, None, None, None]
