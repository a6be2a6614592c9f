"""The tutorial's Transformer: post-LN blocks, ReLU feed-forward, learned position embeddings.

x = dropout(norm1(x + attention(x)))
x = dropout(norm2(x + ff(x)))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .positions import learned_positions


class TutorialBlock(nn.Module):
    def __init__(self, *, attention: nn.Module, d_model: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.attention = attention
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, d_model))
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.dropout(self.norm1(x + self.attention(x, mask)))
        return self.dropout(self.norm2(x + self.ff(x)))


class TutorialTransformer(nn.Module):
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
    ):
        super().__init__()
        self.d_model = d_model
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = learned_positions(attention, max_length, d_model)
        self.blocks = nn.ModuleList(
            TutorialBlock(
                attention=attention(d_model=d_model, num_heads=num_heads, dropout=dropout),
                d_model=d_model,
                ffn_dim=ffn_dim,
                dropout=dropout,
            )
            for _ in range(num_layers)
        )

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        x = self.token_embedding(input_ids)  # (B, S, D)
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(input_ids.shape[1], device=input_ids.device))
        for block in self.blocks:
            x = block(x, attention_mask)
        return x
