"""The shared shape of sequence-level heads: pool, optional dense+tanh pooler, dropout, linear."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from zoo.nn import pool


class PooledHead(nn.Module):
    def __init__(self, *, d_model: int, num_labels: int, dropout: float, pooling: str = "cls",
                 pooler: bool = False):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling '{pooling}' (choices: cls, mean)")
        self.pooling = pooling
        self.pooler = nn.Sequential(nn.Linear(d_model, d_model), nn.Tanh()) if pooler else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_labels)

    def forward(self, hidden: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        x = pool(hidden, mask, self.pooling)  # (B, D)
        if self.pooler is not None:
            x = self.pooler(x)
        return self.classifier(self.dropout(x))  # (B, num_labels)

    def loss(self, logits: Tensor, labels: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError
