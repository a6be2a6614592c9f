"""Attention pooling: a learned score per token, a softmax over the real tokens, the weighted mean of their
states, then dropout and a linear classifier.

    score_t = w·h_t                         (attention_dim = 0, the default)
    score_t = w·tanh(W h_t + b)             (attention_dim > 0: an additive scorer with that hidden size)
    α = softmax over the real tokens of score,    pooled = Σ_t α_t h_t,    logits = classifier(dropout(pooled))

zoo calls the class with d_model, num_labels, dropout and the user's options (`attention_dim`). What zoo
guarantees a head, and what this one does with it:

- ``mask`` is a bool (B, S) tensor, True for a real token, or None when the model was called without an
  attention_mask (every token is real). Padding gets weight exactly 0, so padding never changes the logits.
- ``hidden`` may be float32 or, under autocast, bfloat16/float16; the softmax and the weighted sum run in
  float32 whatever it is.
- zoo applies no dropout before the head; this head owns its dropout (on the pooled vector).
- ``loss(logits, labels, mask)`` is called positionally and returns the mean over the batch: plain
  cross-entropy, the same loss as zoo's built-in ``cls`` head.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from zoo.nn import dtype_min


class AttentionPoolingHead(nn.Module):
    def __init__(self, *, d_model: int, num_labels: int, dropout: float, attention_dim: int = 0):
        super().__init__()
        if attention_dim < 0:
            raise ValueError(f"attention_dim must be >= 0, got {attention_dim}")
        # attention_dim 0: the score reads the hidden states directly (nn.Identity keeps forward one code path).
        self.project = (
            nn.Sequential(nn.Linear(d_model, attention_dim), nn.Tanh()) if attention_dim else nn.Identity()
        )
        self.score = nn.Linear(attention_dim or d_model, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_labels)

    def weights(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, S) pooling weights: a softmax over the real tokens of each row; padding gets exactly 0."""
        scores = (
            self.score(self.project(hidden.float())).squeeze(-1).float()
        )  # (B, S); float32 under autocast too
        if mask is not None:
            scores = scores.masked_fill(~mask, dtype_min(scores.dtype))
        return scores.softmax(dim=-1)

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        alpha = self.weights(hidden, mask)  # (B, S)
        pooled = (alpha.unsqueeze(-1) * hidden.float()).sum(dim=1)  # (B, D)
        return self.classifier(self.dropout(pooled.to(hidden.dtype)))  # (B, num_labels)

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        # Logits arrive in bf16/fp16 after an autocast forward (zoo runs the loss outside autocast): upcast.
        return F.cross_entropy(logits.float(), labels.long())
