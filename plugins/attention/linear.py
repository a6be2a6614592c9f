"""Linear attention (Katharopoulos et al. 2020): φ(Q)(φ(K)ᵀV) with φ(x) = elu(x) + 1, O(S) memory."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from zoo.nn import QKVAttention


class LinearAttention(QKVAttention):
    def __init__(self, *, d_model: int, num_heads: int, dropout: float = 0.0, eps: float = 1e-6):
        super().__init__(d_model=d_model, num_heads=num_heads, dropout=dropout)
        self.eps = eps
        self.output_dropout = nn.Dropout(dropout)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        q, k = F.elu(q) + 1, F.elu(k) + 1
        if mask is not None:  # a padded key contributes nothing to the sums below
            k = k * mask[:, None, :, None].to(k.dtype)
        context = k.transpose(-2, -1) @ v  # (B, h, dh, dh): no S x S matrix
        normaliser = q @ k.sum(dim=-2, keepdim=True).transpose(-2, -1)  # (B, h, S, 1)
        return self.output_dropout((q @ context) / (normaliser + self.eps))
