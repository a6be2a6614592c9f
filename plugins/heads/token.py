"""Per-token classification: a linear layer on every position."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from zoo.constants import IGNORE_INDEX


class TokenClassificationHead(nn.Module):
    """labels: (B, S) class indices; -100 and padded positions are ignored by the loss."""

    def __init__(self, *, d_model: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_labels)

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.classifier(self.dropout(hidden))  # (B, S, num_labels)

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        labels = labels.long()
        if mask is not None:
            labels = labels.masked_fill(~mask.bool(), IGNORE_INDEX)
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
