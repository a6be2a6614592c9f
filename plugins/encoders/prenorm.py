"""A modern pre-norm encoder: RMSNorm before each sublayer, SwiGLU feed-forward, rotary positions.

Rotary positions go to an attention that applies them (capability 'rotary'), passed as its ``rotary=``
argument. Attentions that encode positions themselves ('positions') get none; any other gets a learned table.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .positions import learned_positions, rotary_for


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, ffn_dim: int):
        super().__init__()
        self.gate = nn.Linear(d_model, ffn_dim, bias=False)
        self.up = nn.Linear(d_model, ffn_dim, bias=False)
        self.down = nn.Linear(ffn_dim, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class PreNormBlock(nn.Module):
    def __init__(self, *, attention: nn.Module, d_model: int, ffn_dim: int, dropout: float, norm_eps: float):
        super().__init__()
        self.attention_norm = nn.RMSNorm(d_model, eps=norm_eps)
        self.attention = attention
        self.ffn_norm = nn.RMSNorm(d_model, eps=norm_eps)
        self.ffn = SwiGLU(d_model, ffn_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), mask))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class PreNormTransformer(nn.Module):
    def __init__(
        self,
        *,
        attention: Callable[..., nn.Module],
        vocab_size: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        max_length: int,
        dropout: float,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.d_model = d_model
        rotary = rotary_for(attention, d_model // num_heads) is not None
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = None if rotary else learned_positions(attention, max_length, d_model)
        self.blocks = nn.ModuleList(
            PreNormBlock(
                attention=attention(
                    d_model=d_model,
                    num_heads=num_heads,
                    dropout=dropout,
                    rotary=rotary_for(attention, d_model // num_heads),
                ),
                d_model=d_model,
                ffn_dim=ffn_dim,
                dropout=dropout,
                norm_eps=norm_eps,
            )
            for _ in range(num_layers)
        )
        self.final_norm = nn.RMSNorm(d_model, eps=norm_eps)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        x = self.token_embedding(input_ids)
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(input_ids.shape[1], device=input_ids.device))
        for block in self.blocks:
            x = block(x, attention_mask)
        return self.final_norm(x)
