"""DeBERTa-v2/v3's encoder: BERT's post-LN layers around an attention that may take one relative position
table shared by every layer (``disentangled``, capability 'relative').

With such an attention the encoder takes each layer's table (``release_table()``), keeps the first as
``relative`` (Hugging Face's ``encoder.rel_embeddings`` and ``encoder.LayerNorm``) and passes its output to
every layer; there are no absolute positions unless ``position_biased_input`` (DeBERTa-v2's default, False in
v3). With any other attention it is BERT with DeBERTa's embeddings: a learned position table (none for an
attention that encodes positions itself, like ALiBi). Module names follow Hugging Face's where the layouts
agree, so the importer (deberta_import.py) is a short rename table.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .bert import BertLayer, segment_ids
from .positions import attention_capabilities


class DebertaEmbeddings(nn.Module):
    """word (+ position) (+ token type) embeddings ``embedding_size`` wide, ``embed_proj`` (no bias) up to
    d_model when narrower, LayerNorm, padding zeroed, dropout."""

    def __init__(
        self,
        *,
        vocab_size: int,
        width: int,
        d_model: int,
        max_length: int,
        positions: bool,
        type_vocab_size: int,
        layer_norm_eps: float,
        dropout: float,
    ):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, width)
        self.position_embeddings = nn.Embedding(max_length, width) if positions else None
        self.token_type_embeddings = nn.Embedding(type_vocab_size, width) if type_vocab_size > 0 else None
        self.embed_proj = nn.Linear(width, d_model, bias=False) if width != d_model else None
        self.LayerNorm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, mask: Tensor | None) -> Tensor:
        x = self.word_embeddings(input_ids)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(torch.arange(input_ids.shape[1], device=input_ids.device))
        if self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings(token_type_ids)
        if self.embed_proj is not None:
            x = self.embed_proj(x)
        x = self.LayerNorm(x)
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        return self.dropout(x)


class PlainLayer(BertLayer):
    """A BERT layer called as the relative one is; its attention takes no table."""

    def forward(self, x: Tensor, mask: Tensor | None, relative: Tensor | None = None) -> Tensor:
        return super().forward(x, mask)


class RelativeLayer(BertLayer):
    """A BERT layer whose attention takes the shared relative table."""

    def forward(self, x: Tensor, mask: Tensor | None, relative: Tensor | None = None) -> Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, mask, relative)))
        return self.output_norm(x + self.dropout(self.output(self.activation(self.intermediate(x)))))


class DebertaEncoder(nn.Module):
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
        layer_norm_eps: float = 1e-7,
        hidden_act: str = "gelu",
        type_vocab_size: int = 0,
        position_biased_input: bool = False,
        embedding_size: int | None = None,
        sep_token_id: int | None = None,
    ):
        super().__init__()
        if type_vocab_size < 0 or (embedding_size is not None and embedding_size < 1):
            raise ValueError(
                f"type_vocab_size must be >= 0 and embedding_size >= 1, got {type_vocab_size} and {embedding_size}"
            )
        capabilities = attention_capabilities(attention)
        shared = bool(capabilities.get("relative"))
        self.d_model, self.sep_token_id, self.type_vocab_size = d_model, sep_token_id, type_vocab_size
        self.embeddings = DebertaEmbeddings(
            vocab_size=vocab_size,
            width=embedding_size or d_model,
            d_model=d_model,
            max_length=max_length,
            positions=position_biased_input or not capabilities.get("positions"),
            type_vocab_size=type_vocab_size,
            layer_norm_eps=layer_norm_eps,
            dropout=dropout,
        )
        layer = RelativeLayer if shared else PlainLayer
        self.layer = nn.ModuleList(
            layer(
                attention=attention(d_model=d_model, num_heads=num_heads, dropout=dropout),
                d_model=d_model,
                ffn_dim=ffn_dim,
                layer_norm_eps=layer_norm_eps,
                dropout=dropout,
                hidden_act=hidden_act,
            )
            for _ in range(num_layers)
        )
        tables = [block.attention.release_table() for block in self.layer] if shared else []
        self.relative = tables[0] if tables else None  # one table for every layer

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        if token_type_ids is None:
            token_type_ids = segment_ids(input_ids, self.sep_token_id, self.type_vocab_size)
        x = self.embeddings(input_ids, token_type_ids, attention_mask)
        relative = self.relative() if self.relative is not None else None
        for layer in self.layer:
            x = layer(x, attention_mask, relative)
        return x
