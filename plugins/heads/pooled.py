"""The shared shape of sequence-level heads: pool, optional dense+activation pooler, dropout, linear.

The pooler's activation is tanh for BERT and RoBERTa's classifiers, relu for DistilBERT's
(``pre_classifier``), gelu for ELECTRA's. ``pooler_norm`` adds a LayerNorm after it (ModernBERT's head)."""

from __future__ import annotations

from torch import Tensor, nn

from zoo.nn import pool

POOLER_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}


class PooledHead(nn.Module):
    def __init__(
        self,
        *,
        d_model: int,
        num_labels: int,
        dropout: float,
        pooling: str = "cls",
        pooler: bool = False,
        pooler_activation: str = "tanh",
        pooler_norm: bool = False,
    ):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling '{pooling}' (choices: cls, mean)")
        if pooler_activation not in POOLER_ACTIVATIONS:
            raise ValueError(
                f"unknown pooler_activation '{pooler_activation}' (choices: {', '.join(POOLER_ACTIVATIONS)})"
            )
        self.pooling = pooling
        self.pooler = (  # built only when asked for: its initialisation draws from the seed's generator
            nn.Sequential(
                nn.Linear(d_model, d_model),
                POOLER_ACTIVATIONS[pooler_activation](),
                *([nn.LayerNorm(d_model)] if pooler_norm else []),
            )
            if pooler
            else None
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_labels)

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        x = pool(hidden, mask, self.pooling)  # (B, D)
        if self.pooler is not None:
            x = self.pooler(x)
        return self.classifier(self.dropout(x))  # (B, num_labels)

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        raise NotImplementedError
