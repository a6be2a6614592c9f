"""BERT's encoder. Module names follow Hugging Face's, so a checkpoint maps onto it by a short
rename table (zoo/hf.py): embeddings.* are identical, and per layer

    attention.self.{query,key,value} -> layer.N.attention.{q,k,v}_proj
    attention.output.dense/LayerNorm -> layer.N.attention.out_proj / layer.N.attention_norm
    intermediate.dense, output.dense/LayerNorm -> layer.N.intermediate / output / output_norm
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from zoo.nn import _tracing, activation

from .positions import learned_positions


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings. ``position_embeddings`` is None when the attention
    encodes positions itself (ALiBi): such a model cannot take a checkpoint's learned positions.
    ``token_type_embeddings`` is None when ``type_vocab_size`` is 0 (DistilBERT). Position i reads row
    ``position_offset + i`` (RoBERTa numbers positions from padding_idx + 1; zoo pads on the right, so the
    real tokens of a padded row get the positions Hugging Face gives them)."""

    def __init__(
        self,
        *,
        vocab_size: int,
        d_model: int,
        type_vocab_size: int,
        layer_norm_eps: float,
        dropout: float,
        position_embeddings: nn.Embedding | None,
        position_offset: int = 0,
    ):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, d_model)
        self.position_embeddings = position_embeddings
        self.position_offset = position_offset
        self.token_type_embeddings = nn.Embedding(type_vocab_size, d_model) if type_vocab_size > 0 else None
        self.LayerNorm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids)
        if self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings(token_type_ids)
        if self.position_embeddings is not None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device) + self.position_offset
            x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


def sinusoidal_table(rows: int, dim: int) -> Tensor:
    """The fixed sin/cos position table of Vaswani et al. (DistilBERT's ``sinusoidal_pos_embds``)."""
    position = torch.arange(rows, dtype=torch.float64)[:, None]
    freq = torch.pow(10000.0, -2 * torch.div(torch.arange(dim), 2, rounding_mode="floor") / dim)[None, :]
    angles = position * freq  # (rows, dim)
    table = torch.zeros(rows, dim, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = angles[:, 0::2].sin(), angles[:, 1::2].cos()
    return table.float()


def segment_ids(input_ids: Tensor, sep_token_id: int | None, type_vocab_size: int) -> Tensor:
    """Token types from the input: 0 up to and including the first [SEP], 1 after it (0 everywhere with
    fewer than two types or no [SEP] id)."""
    if sep_token_id is None or type_vocab_size < 2:
        return torch.zeros_like(input_ids)
    is_sep = (input_ids == sep_token_id).long()
    return (is_sep.cumsum(dim=1) - is_sep).clamp(max=1)


class BertLayer(nn.Module):
    def __init__(
        self,
        *,
        attention: nn.Module,
        d_model: int,
        ffn_dim: int,
        layer_norm_eps: float,
        dropout: float,
        hidden_act: str,
    ):
        super().__init__()
        self.attention = attention
        self.attention_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.intermediate = nn.Linear(d_model, ffn_dim)
        self.activation = activation(hidden_act)
        self.output = nn.Linear(ffn_dim, d_model)
        self.output_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        # Training on a CPU: the feed-forward (2/3 of a layer's GEMM work) runs on the real tokens only;
        # padding positions keep their input, which no real token reads (keys are masked, pooling skips them).
        # Not on a GPU: there the FLOPs are cheap and finding the real tokens (nonzero) waits for the device.
        if not torch.jit.is_scripting():  # noqa: SIM102  (TorchScript skips a branch only on this alone)
            if mask is not None and self.training and x.device.type == "cpu" and not _tracing():
                keep = mask.reshape(-1).nonzero().squeeze(1)
                if keep.numel() < mask.numel():
                    flat = x.reshape(-1, x.shape[-1])
                    return flat.index_copy(0, keep, self.feed_forward(flat.index_select(0, keep))).view_as(x)
        return self.feed_forward(x)

    def feed_forward(self, x: Tensor) -> Tensor:
        return self.output_norm(x + self.dropout(self.output(self.activation(self.intermediate(x)))))


class BertEncoder(nn.Module):
    """Token types come from the input: tokens after the first [SEP] (``sep_token_id``) are segment B,
    so text pairs work with only input_ids and attention_mask, as the ONNX contract requires.

    The options that make it the other BERT-layout families (one per Hugging Face difference):
    ``position_offset`` (RoBERTa, XLM-R, CamemBERT: padding_idx + 1; the table has max_length + offset
    rows), ``type_vocab_size`` 1 (one segment) or 0 (DistilBERT: no table), ``sinusoidal_positions`` (a fixed
    sin/cos table, not trained: DistilBERT's sinusoidal_pos_embds), ``embedding_size`` (ELECTRA: narrower
    embeddings, then ``embeddings_project`` to d_model)."""

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
        layer_norm_eps: float = 1e-12,
        type_vocab_size: int = 2,
        hidden_act: str = "gelu",
        sep_token_id: int | None = None,
        position_offset: int = 0,
        sinusoidal_positions: bool = False,
        embedding_size: int | None = None,
    ):
        super().__init__()
        if position_offset < 0 or type_vocab_size < 0:
            raise ValueError(
                f"position_offset and type_vocab_size must be >= 0, got {position_offset} and "
                f"{type_vocab_size}"
            )
        if embedding_size is not None and embedding_size < 1:
            raise ValueError(f"embedding_size must be >= 1, got {embedding_size}")
        self.d_model = d_model
        self.sep_token_id = sep_token_id
        self.type_vocab_size = type_vocab_size
        width = embedding_size or d_model
        positions = learned_positions(attention, max_length + position_offset, width)
        if positions is not None and sinusoidal_positions:
            positions.weight.data.copy_(sinusoidal_table(*positions.weight.shape))
            positions.weight.requires_grad_(False)
        self.embeddings = BertEmbeddings(
            vocab_size=vocab_size,
            d_model=width,
            type_vocab_size=type_vocab_size,
            layer_norm_eps=layer_norm_eps,
            dropout=dropout,
            position_embeddings=positions,
            position_offset=position_offset,
        )
        self.embeddings_project = nn.Linear(width, d_model) if width != d_model else None
        self.layer = nn.ModuleList(
            BertLayer(
                attention=attention(d_model=d_model, num_heads=num_heads, dropout=dropout),
                d_model=d_model,
                ffn_dim=ffn_dim,
                layer_norm_eps=layer_norm_eps,
                dropout=dropout,
                hidden_act=hidden_act,
            )
            for _ in range(num_layers)
        )

    def token_types(self, input_ids: Tensor) -> Tensor:
        return segment_ids(input_ids, self.sep_token_id, self.type_vocab_size)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        if token_type_ids is None:
            token_type_ids = self.token_types(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)
        for layer in self.layer:
            x = layer(x, attention_mask)
        return x
