"""Sentence embeddings: pool the real tokens, an optional dense projection, optional L2 normalisation.

The output is the embedding itself, (B, dim). The loss is MultipleNegativesRankingLoss: each anchor's
positive must win against every other candidate in the batch (the other rows' positives and any hard
negatives), by cross-entropy over scaled cosine similarities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.nn import POOLINGS, pool

ACTIVATIONS = {"tanh": nn.Tanh, "identity": nn.Identity, "relu": nn.ReLU, "gelu": nn.GELU}


class EmbeddingHead(nn.Module):
    """forward -> (B, dim): dim is ``dense_dim`` when a projection is asked for, else d_model.

    labels for the loss: (N,) the column each of the N sequences came from (0 anchor, 1 positive, 2...
    hard negatives), rows of one column in order, as the embedding task collates them."""

    def __init__(
        self,
        *,
        d_model: int,
        num_labels: int | None = None,
        dropout: float = 0.0,
        pooling: str = "mean",
        normalize: bool = True,
        dense_dim: int | None = None,
        dense_activation: str = "tanh",
        dense_bias: bool = True,
        scale: float = 20.0,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}' (choices: {', '.join(POOLINGS)})")
        if dense_activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown dense_activation '{dense_activation}' (choices: {', '.join(ACTIVATIONS)})"
            )
        self.pooling, self.normalize, self.scale = pooling, bool(normalize), float(scale)
        self.dense = nn.Linear(d_model, int(dense_dim), bias=dense_bias) if dense_dim else None
        self.activation = ACTIVATIONS[dense_activation]() if dense_dim else None
        self.dim = int(dense_dim or d_model)

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        x = pool(hidden, mask, self.pooling)  # (B, D)
        if self.dense is not None and self.activation is not None:  # set together
            x = self.activation(self.dense(x))  # (B, dim)
        if self.normalize:
            x = F.normalize(x, p=2.0, dim=-1)
        return x

    def loss(self, embeddings: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        return ranking_loss(embeddings, labels, self.scale)


def ranking_loss(embeddings: Tensor, columns: Tensor, scale: float = 20.0) -> Tensor:
    """MultipleNegativesRankingLoss with cosine similarity: anchors (column 0) against every candidate
    (columns 1...), the i-th anchor's positive being the i-th row of column 1."""
    columns = columns.long().to(embeddings.device)
    anchors, candidates = embeddings[columns == 0], embeddings[columns != 0]
    if anchors.shape[0] == 0 or candidates.shape[0] < anchors.shape[0]:
        raise ValueError(
            f"a contrastive batch needs an anchor and a positive per row; got columns {columns.tolist()[:12]}"
        )
    scores = F.normalize(anchors.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T * scale
    return F.cross_entropy(scores, torch.arange(anchors.shape[0], device=scores.device))
