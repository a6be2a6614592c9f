"""ModernBERT's encoder (Warner et al. 2024): pre-norm layers without biases, a GeGLU feed-forward, rotary
positions with one base on global layers and another on local ones, a global layer every
``global_attn_every_n_layers`` (layer 0 is global) and sliding-window layers between them, a final norm.

Global layers use the chosen attention (rotary when it applies rotary positions; otherwise a learned table
feeds the embeddings, or none for an attention that encodes positions itself). Sliding-window layers are zoo's
`local` attention with ``window = local_attention // 2`` (each token sees that many on either side, as
Hugging Face's mask does) and the local rotary base. Module names follow Hugging Face's layout:

    embeddings.tok_embeddings / norm, layers.N.attn_norm (none in layer 0) / attention / mlp_norm,
    layers.N.mlp.wi (input and gate, stacked) / wo, final_norm
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from zoo.nn import RotaryEmbedding, activation

from ..attention.local import LocalAttention
from .positions import attention_capabilities, learned_positions


class GeGLU(nn.Module):
    """wo(act(input) * gate), where wi stacks the input and gate projections."""

    def __init__(self, d_model: int, ffn_dim: int, *, bias: bool, hidden_act: str, dropout: float):
        super().__init__()
        self.wi = nn.Linear(d_model, 2 * ffn_dim, bias=bias)
        self.activation = activation(hidden_act)
        self.dropout = nn.Dropout(dropout)
        self.wo = nn.Linear(ffn_dim, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        hidden, gate = self.wi(x).chunk(2, dim=-1)
        return self.wo(self.dropout(self.activation(hidden) * gate))


class ModernBertLayer(nn.Module):
    def __init__(
        self,
        *,
        attention: nn.Module,
        d_model: int,
        first: bool,
        norm: Callable[[], nn.Module],
        mlp: nn.Module,
    ):
        super().__init__()
        self.attn_norm = nn.Identity() if first else norm()  # the embeddings' norm serves layer 0
        self.attention = attention
        self.mlp_norm = norm()
        self.mlp = mlp

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.attention(self.attn_norm(x), mask)
        return x + self.mlp(self.mlp_norm(x))


class ModernBertEncoder(nn.Module):
    def __init__(
        self,
        *,
        attention: Callable[..., nn.Module],
        vocab_size: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        max_length: int,
        dropout: float,
        global_attn_every_n_layers: int = 3,
        local_attention: int = 128,
        global_rope_theta: float = 160000.0,
        local_rope_theta: float = 10000.0,
        norm_eps: float = 1e-5,
        norm_bias: bool = False,
        mlp_bias: bool = False,
        hidden_act: str = "gelu",
    ):
        super().__init__()
        if global_attn_every_n_layers < 1 or local_attention < 0:
            raise ValueError(
                "global_attn_every_n_layers must be >= 1 and local_attention >= 0, got "
                f"{global_attn_every_n_layers} and {local_attention}"
            )
        self.d_model = d_model
        head_dim = d_model // num_heads
        rotary = bool(attention_capabilities(attention).get("rotary"))

        def norm() -> nn.Module:
            return nn.LayerNorm(d_model, eps=norm_eps, bias=norm_bias)

        def layer_attention(index: int) -> nn.Module:
            if index % global_attn_every_n_layers:
                return LocalAttention(
                    d_model=d_model,
                    num_heads=num_heads,
                    dropout=dropout,
                    window=local_attention // 2,
                    rotary=RotaryEmbedding(head_dim, local_rope_theta),
                )
            if rotary:
                return attention(
                    d_model=d_model,
                    num_heads=num_heads,
                    dropout=dropout,
                    rotary=RotaryEmbedding(head_dim, global_rope_theta),
                )
            return attention(d_model=d_model, num_heads=num_heads, dropout=dropout)

        self.embeddings = nn.Module()
        self.embeddings.tok_embeddings = nn.Embedding(vocab_size, d_model)
        self.embeddings.norm = norm()
        self.embeddings.dropout = nn.Dropout(dropout)
        self.position_embedding = None if rotary else learned_positions(attention, max_length, d_model)
        self.layers = nn.ModuleList(
            ModernBertLayer(
                attention=layer_attention(i),
                d_model=d_model,
                first=i == 0,
                norm=norm,
                mlp=GeGLU(d_model, ffn_dim, bias=mlp_bias, hidden_act=hidden_act, dropout=dropout),
            )
            for i in range(num_layers)
        )
        self.final_norm = norm()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        x = self.embeddings.tok_embeddings(input_ids)
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(input_ids.shape[1], device=input_ids.device))
        x = self.embeddings.dropout(self.embeddings.norm(x))
        for layer in self.layers:
            x = layer(x, attention_mask)
        return self.final_norm(x)
