"""LoRA (Hu et al., 2021): W x + (alpha / r) · B A dropout(x) on chosen linear layers, with A (r, in) initialised
as nn.Linear initialises a weight and B (out, r) at zero, so the adapted model starts equal to the base.

    zoo finetune base --adapter lora --set adapter.r=8 --set adapter.targets=qkv,out,ffn ...
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.adapters import default_targets, find_linears, replace_module


class LoRALinear(nn.Linear):
    """An nn.Linear that keeps the base ``weight`` and ``bias`` (same names, frozen by zoo) and adds
    ``lora_A`` (r, in) and ``lora_B`` (out, r); ``merge_adapter`` returns the plain nn.Linear it equals."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        factory: dict[str, Any] = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r
        self.lora_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (..., out)
        return F.linear(x, self.weight, self.bias) + update * self.scaling

    def delta_weight(self) -> Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling  # (out, in)

    def merge_adapter(self) -> nn.Linear:
        linear = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        with torch.no_grad():
            linear.weight.copy_(self.weight + self.delta_weight().to(self.weight.dtype))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.lora_A.shape[0]}, scaling={self.scaling:g}"


def lora(
    *, encoder: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.05, targets: str | None = None
) -> None:
    """Put LoRA on the encoder's ``targets`` (comma-separated: qkv, out, ffn; default all three, or the encoder's
    ``adapter_targets``): rank ``r``, scaling ``alpha / r``, ``dropout`` on the update's input."""
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ValueError(f"r must be a positive integer, got {r!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    for name, linear in find_linears(encoder, targets or default_targets(encoder)).items():
        if isinstance(linear, LoRALinear):
            raise ValueError(f"'{name}' already has LoRA")
        replace_module(encoder, name, LoRALinear(linear, r, float(alpha), float(dropout)))
