"""Heads for the TorchScript tests of the kit and the export (no tests here): the same max-pooling
classification head twice, once written so that torch.jit.script compiles it and once with torch.finfo,
which TorchScript does not know."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.nn import dtype_min


class ScriptableMaxHead(nn.Module):
    def __init__(self, *, d_model: int, num_labels: int, dropout: float):
        super().__init__()
        self.classifier = nn.Linear(d_model, num_labels)

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is not None:
            hidden = hidden.masked_fill(~mask[..., None], dtype_min(hidden.dtype))
        return self.classifier(hidden.max(dim=1).values)

    def loss(self, logits, labels, mask=None):
        return F.cross_entropy(logits.float(), labels.long())


class FinfoMaxHead(ScriptableMaxHead):
    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is not None:
            hidden = hidden.masked_fill(~mask[..., None], torch.finfo(hidden.dtype).min)
        return self.classifier(hidden.max(dim=1).values)
