"""Per-token classification: a linear layer on every position, optionally after a transform (dense,
activation, LayerNorm: ModernBertForTokenClassification's ``head``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from zoo.constants import IGNORE_INDEX

from .pooled import POOLER_ACTIVATIONS


class TokenClassificationHead(nn.Module):
    """labels: (B, S) class indices; -100 and padded positions are ignored by the loss."""

    def __init__(
        self,
        *,
        d_model: int,
        num_labels: int,
        dropout: float,
        transform: bool = False,
        transform_activation: str = "gelu",
    ):
        super().__init__()
        if transform_activation not in POOLER_ACTIVATIONS:
            raise ValueError(
                f"unknown transform_activation '{transform_activation}' "
                f"(choices: {', '.join(POOLER_ACTIVATIONS)})"
            )
        self.transform = (  # built only when asked for: its initialisation draws from the seed's generator
            nn.Sequential(
                nn.Linear(d_model, d_model), POOLER_ACTIVATIONS[transform_activation](), nn.LayerNorm(d_model)
            )
            if transform
            else None
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_labels)

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.transform is not None:
            hidden = self.transform(hidden)
        return self.classifier(self.dropout(hidden))  # (B, S, num_labels)

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        labels = labels.long()
        if mask is not None:
            labels = labels.masked_fill(~mask.bool(), IGNORE_INDEX)
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
