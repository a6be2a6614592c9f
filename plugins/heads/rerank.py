"""Reranking (a cross-encoder): one relevance score per (query, text) pair.

The pair goes through the encoder as one sequence ([CLS] query [SEP] text [SEP]); the head pools it, an
optional dense+activation pooler (BERT's, for an imported ``*ForSequenceClassification``), and a linear
layer to one logit. The score is its sigmoid, as sentence-transformers' CrossEncoder gives it for one
label. The loss is binary cross-entropy against labels in [0, 1] (0/1, or a graded relevance).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .pooled import PooledHead


class RerankHead(PooledHead):
    """forward -> (B, 1) logits; labels for the loss: (B,) floats in [0, 1]."""

    def __init__(
        self,
        *,
        d_model: int,
        num_labels: int = 1,
        dropout: float,
        pooling: str = "cls",
        pooler: bool = False,
        pooler_activation: str = "tanh",
        pooler_norm: bool = False,
    ):
        if num_labels != 1:
            raise ValueError(
                f"a rerank head gives one score per pair; num_labels must be 1, got {num_labels}"
            )
        super().__init__(
            d_model=d_model,
            num_labels=1,
            dropout=dropout,
            pooling=pooling,
            pooler=pooler,
            pooler_activation=pooler_activation,
            pooler_norm=pooler_norm,
        )

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits.float().reshape(-1), labels.float().reshape(-1))
