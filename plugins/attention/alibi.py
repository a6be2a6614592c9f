"""ALiBi (Press et al. 2022), symmetric for encoders: score bias -m_h·|i - j|, one slope per head."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from zoo.nn import QKVAttention, dtype_min, key_mask, scaled_dot_product


def alibi_slopes(num_heads: int) -> Tensor:
    """The paper's geometric slopes; head counts that are not powers of two interleave two series."""

    def series(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = series(closest) + series(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBiAttention(QKVAttention):
    def __init__(self, *, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__(d_model=d_model, num_heads=num_heads, dropout=dropout)
        self.register_buffer("slopes", alibi_slopes(num_heads)[:, None, None], persistent=False)
        self.slopes: Tensor  # the buffer's type, for type checkers

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        positions = torch.arange(q.shape[-2], device=q.device)
        distance = (positions[None, :] - positions[:, None]).abs().to(q.dtype)  # (S, S)
        bias = -self.slopes.to(q.dtype) * distance  # (h, S, S)
        if mask is not None:
            bias = torch.where(key_mask(mask), bias, dtype_min(q.dtype))  # (B, h, S, S)
        return scaled_dot_product(q, k, v, bias, self.active_dropout)
