"""The ordinal head: a cumulative-link model. One score per text, s = w·pool(hidden), is compared with
K-1 ordered thresholds θ_0 < θ_1 < ... < θ_{K-2}:

    logit_k = s - θ_k,   P(rank > k) = σ(logit_k)

Because the thresholds are ordered, the logits decrease with k and the predicted rank (the number of
logits > 0) is always consistent: a text above rank 3 is above rank 2. The loss is the binary
cross-entropy of each logit against "rank > k", summed over k and averaged over the batch (the CORAL
loss, here with one shared score and ordered biases).

zoo calls the class with d_model, num_labels (K, the number of ranks), dropout and the user's options
(`pooling`: mean or cls). forward returns (B, K-1) logits; loss takes (B,) ranks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.nn import pool

GAP = 1.0  # the initial distance between neighbouring thresholds


class OrdinalHead(nn.Module):
    def __init__(self, *, d_model: int, num_labels: int, dropout: float, pooling: str = "mean"):
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"the ordinal head needs at least 2 ranks, got num_labels={num_labels}")
        if pooling not in ("mean", "cls"):
            raise ValueError(f"unknown pooling '{pooling}' (choices: cls, mean)")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(d_model, 1, bias=False)  # the thresholds play the bias
        # cutpoints[0] is θ_0; each later entry is a gap softplus(c) > 0, so the thresholds stay ordered.
        # Initially the thresholds are GAP apart and centred on 0.
        first = -GAP * (num_labels - 2) / 2
        gap = math.log(math.expm1(GAP))  # softplus⁻¹(GAP)
        self.cutpoints = nn.Parameter(torch.tensor([first] + [gap] * (num_labels - 2)))

    def thresholds(self) -> Tensor:
        """(K-1,) increasing: θ_0 = c_0, θ_k = c_0 + Σ_{j=1..k} softplus(c_j)."""
        gaps = F.softplus(self.cutpoints)
        return self.cutpoints[0] - gaps[0] + torch.cumsum(gaps, dim=0)  # no empty slice when K = 2

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        score = self.score(self.dropout(pool(hidden, mask, self.pooling)))  # (B, 1)
        return score - self.thresholds().to(score.dtype)  # (B, K-1)

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        logits = logits.float()
        above = (labels.long()[:, None] > torch.arange(logits.shape[-1], device=logits.device)).float()
        return F.binary_cross_entropy_with_logits(logits, above, reduction="none").sum(-1).mean()
