"""BERT's encoder. Module names follow Hugging Face's, so a checkpoint maps onto it by a short
rename table (zoo/hf.py): embeddings.* are identical, and per layer

    attention.self.{query,key,value} -> layer.N.attention.{q,k,v}_proj
    attention.output.dense/LayerNorm -> layer.N.attention.out_proj / layer.N.attention_norm
    intermediate.dense, output.dense/LayerNorm -> layer.N.intermediate / output / output_norm
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from zoo.nn import activation

from .positions import learned_positions


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings. ``position_embeddings`` is None when the attention
    encodes positions itself (ALiBi): such a model cannot take a checkpoint's learned positions."""

    def __init__(self, *, vocab_size: int, d_model: int, type_vocab_size: int, layer_norm_eps: float,
                 dropout: float, position_embeddings: Optional[nn.Embedding]):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, d_model)
        self.position_embeddings = position_embeddings
        self.token_type_embeddings = nn.Embedding(type_vocab_size, d_model)
        self.LayerNorm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(torch.arange(input_ids.shape[1], device=input_ids.device))
        return self.dropout(self.LayerNorm(x))


class BertLayer(nn.Module):
    def __init__(self, *, attention: nn.Module, d_model: int, ffn_dim: int, layer_norm_eps: float,
                 dropout: float, hidden_act: str):
        super().__init__()
        self.attention = attention
        self.attention_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.intermediate = nn.Linear(d_model, ffn_dim)
        self.activation = activation(hidden_act)
        self.output = nn.Linear(ffn_dim, d_model)
        self.output_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        return self.output_norm(x + self.dropout(self.output(self.activation(self.intermediate(x)))))


class BertEncoder(nn.Module):
    """Token types come from the input: tokens after the first [SEP] (``sep_token_id``) are segment B,
    so text pairs work with only input_ids and attention_mask, as the ONNX contract requires."""

    def __init__(self, *, attention: Callable[..., nn.Module], vocab_size: int, d_model: int,
                 num_layers: int, num_heads: int, ffn_dim: int, max_length: int, dropout: float,
                 layer_norm_eps: float = 1e-12, type_vocab_size: int = 2, hidden_act: str = "gelu",
                 sep_token_id: Optional[int] = None):
        super().__init__()
        self.d_model = d_model
        self.sep_token_id = sep_token_id
        self.type_vocab_size = type_vocab_size
        self.embeddings = BertEmbeddings(vocab_size=vocab_size, d_model=d_model, type_vocab_size=type_vocab_size,
                                         layer_norm_eps=layer_norm_eps, dropout=dropout,
                                         position_embeddings=learned_positions(attention, max_length, d_model))
        self.layer = nn.ModuleList(
            BertLayer(attention=attention(d_model=d_model, num_heads=num_heads, dropout=dropout),
                      d_model=d_model, ffn_dim=ffn_dim, layer_norm_eps=layer_norm_eps, dropout=dropout,
                      hidden_act=hidden_act)
            for _ in range(num_layers)
        )

    def token_types(self, input_ids: Tensor) -> Tensor:
        if self.sep_token_id is None or self.type_vocab_size < 2:
            return torch.zeros_like(input_ids)
        is_sep = (input_ids == self.sep_token_id).long()
        return (is_sep.cumsum(dim=1) - is_sep).clamp(max=1)  # 0 up to and including the first [SEP]

    def forward(self, input_ids: Tensor, attention_mask: Optional[Tensor] = None,
                token_type_ids: Optional[Tensor] = None) -> Tensor:
        if token_type_ids is None:
            token_type_ids = self.token_types(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layer:
            x = layer(x, attention_mask)
        return x
