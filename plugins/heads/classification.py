"""Single-label (softmax) and multi-label (sigmoid) sequence classification."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .pooled import PooledHead


class ClassificationHead(PooledHead):
    """labels: (B,) class indices."""

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        return F.cross_entropy(logits.float(), labels.long())


class MultiLabelHead(PooledHead):
    """labels: (B, num_labels) multi-hot 0/1."""

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
