"""Masked language modelling (BERT's ``cls.predictions``): transform (dense, GELU, LayerNorm), then a decoder
whose weight is the encoder's word-embedding matrix (tied) plus a bias per vocabulary entry.

The tie is made by :meth:`MLMHead.tie_weights`, which zoo calls once the encoder is built. The embedding
module is held as a plain reference, not a submodule, so the state dict holds the matrix once (safetensors
refuses shared tensors) and a saved model reloads tied. Built alone (never tied), the head decodes with its
own ``num_labels``-wide linear layer.

The loss is sparse: only positions whose label is not IGNORE_INDEX count (the masked ones). Given hidden
states of only those positions ((N, D) instead of (B, S, D)), the head decodes only them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.constants import IGNORE_INDEX

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
}


def input_embeddings(encoder: nn.Module) -> nn.Embedding:
    """The encoder's word-embedding table: ``get_input_embeddings()`` when it has one, else its first
    nn.Embedding (every built-in encoder creates its token table first)."""
    getter = getattr(encoder, "get_input_embeddings", None)
    if callable(getter):
        return getter()
    for module in encoder.modules():
        if isinstance(module, nn.Embedding):
            return module
    raise ValueError(f"{type(encoder).__name__} has no nn.Embedding to tie the mlm decoder to")


class MLMHead(nn.Module):
    """hidden (B, S, D) or (N, D) -> logits (B, S, V) or (N, V); labels: token ids, IGNORE_INDEX elsewhere."""

    def __init__(
        self,
        *,
        d_model: int,
        num_labels: int,
        dropout: float,
        transform_activation: str = "gelu",
        transform_norm_eps: float = 1e-12,
    ):
        super().__init__()
        if transform_activation not in ACTIVATIONS:
            raise ValueError(
                f"transform_activation must be one of {', '.join(ACTIVATIONS)}, got '{transform_activation}'"
            )
        self.dense = nn.Linear(d_model, d_model)
        self.act = ACTIVATIONS[transform_activation]()
        self.norm = nn.LayerNorm(d_model, eps=transform_norm_eps)
        # fresh weights: logits of unit scale whatever the embeddings' scale (zoo's encoders draw them from
        # N(0, 1), so an untied-scale decoder would start with logits of std √d_model)
        nn.init.constant_(self.norm.weight, d_model**-0.5)
        self.decoder: nn.Linear | None = nn.Linear(d_model, num_labels)  # replaced by the tie
        self.bias: nn.Parameter | None = None
        self.__dict__["_embedding"] = None  # not a submodule: the encoder owns (and saves) the matrix

    def tie_weights(self, encoder: nn.Module) -> None:
        embedding = input_embeddings(encoder)
        self.__dict__["_embedding"] = embedding
        self.decoder = None
        weight = embedding.weight
        self.bias = nn.Parameter(torch.zeros(weight.shape[0], device=weight.device, dtype=weight.dtype))

    @property
    def tied(self) -> bool:
        return self.__dict__["_embedding"] is not None

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.norm(self.act(self.dense(hidden)))
        embedding = self.__dict__["_embedding"]
        if embedding is None:
            assert self.decoder is not None  # untied: the head's own decoder
            return self.decoder(x)
        return F.linear(x, embedding.weight, self.bias)

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        labels = labels.long()
        if mask is not None and labels.dim() == 2:
            labels = labels.masked_fill(~mask.bool(), IGNORE_INDEX)
        logits, labels = logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1)
        if not bool((labels != IGNORE_INDEX).any()):  # nothing masked: no signal, but a graph to backprop
            return logits.sum() * 0.0
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
