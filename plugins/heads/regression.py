"""Regression of one or more real-valued targets."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .pooled import PooledHead


class RegressionHead(PooledHead):
    """labels: (B,) or (B, num_labels) floats."""

    def __init__(
        self,
        *,
        d_model: int,
        num_labels: int = 1,
        dropout: float,
        pooling: str = "mean",
        pooler: bool = False,
        pooler_activation: str = "tanh",
        pooler_norm: bool = False,
    ):
        super().__init__(
            d_model=d_model,
            num_labels=num_labels,
            dropout=dropout,
            pooling=pooling,
            pooler=pooler,
            pooler_activation=pooler_activation,
            pooler_norm=pooler_norm,
        )

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        return F.mse_loss(logits.float(), labels.float().reshape(logits.shape))
