"""How an encoder gives its attention positions, decided by the attention's capabilities: rotary for an
attention that applies it (when the encoder wants rotary), no table for one that encodes positions itself
(ALiBi), else a learned table. One place decides, so no combination gets two position schemes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from zoo.nn import RotaryEmbedding


def attention_capabilities(attention: Callable[..., nn.Module]) -> dict[str, Any]:
    return dict(getattr(attention, "capabilities", {}))


def learned_positions(
    attention: Callable[..., nn.Module], max_length: int, d_model: int
) -> nn.Embedding | None:
    """A learned position table, or None when the attention encodes positions itself (ALiBi)."""
    if attention_capabilities(attention).get("positions"):
        return None
    return nn.Embedding(max_length, d_model)


def rotary_for(attention: Callable[..., nn.Module], head_dim: int) -> RotaryEmbedding | None:
    """A rotary embedding for an attention that applies one (capability 'rotary'), else None."""
    return RotaryEmbedding(head_dim) if attention_capabilities(attention).get("rotary") else None
