"""AdamW without decay on biases and norms, and linear warm-up then linear decay."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Matrices (linear and embedding weights) decay; biases and norm scales (1-D) do not."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: str) -> torch.optim.AdamW:
    """AdamW with the fused kernel (CUDA, and CPU since torch 2.4): one pass over all tensors. On CPU it
    measured 19 ms per step for MiniLM against 121 ms for the per-tensor loop (bench/NOTES.md)."""
    groups = param_groups(model, weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
    except RuntimeError:  # a device or dtype without the fused kernel
        return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999), eps=1e-8)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (1-based): up linearly, then down to 0."""
    if warmup and step <= warmup:
        return step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def warmup_steps(total: int, ratio: float) -> int:
    return math.ceil(total * ratio)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
