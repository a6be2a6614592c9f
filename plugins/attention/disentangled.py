"""DeBERTa's disentangled attention (He et al. 2021; v2/v3 as in Hugging Face's DebertaV2): content→content
scores plus content→position (c2p) and position→content (p2c) terms over bucketed relative positions.

    score(i, j) = [q_i·k_j + q_i·Kr[δ(i, j)] + k_j·Qr[δ(j, i)]] / √(dh · (1 + #terms))

where δ is the relative distance i - j, log-bucketed beyond ``position_buckets / 2`` and shifted into
``[0, 2·span)``, and Kr, Qr are the relative position table projected by the attention's own key and query
projections (``share_att_key``, DeBERTa-v3) or by ``pos_key_proj`` / ``pos_query_proj``.

The table (``RelativeTable``: 2·span rows, optionally layer-normalised, ``norm_rel_ebd``) is owned by the
attention when it is used alone or under an encoder that knows nothing of it (every layer then has its own).
An encoder that shares one table across layers (``deberta``, capability 'relative') takes each layer's table
with ``release_table()``, keeps one, and passes its output to ``forward(x, mask, relative)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.nn import QKVAttention, dtype_min, key_mask

TERMS = ("c2p", "p2c")


class RelativeTable(nn.Module):
    """The relative position embeddings: ``rows`` x ``d_model``, layer-normalised when ``norm`` is set."""

    def __init__(self, rows: int, d_model: int, *, norm: bool, eps: float):
        super().__init__()
        self.embeddings = nn.Embedding(rows, d_model)
        self.norm = nn.LayerNorm(d_model, eps=eps) if norm else None

    def forward(self) -> Tensor:
        table = self.embeddings.weight
        return self.norm(table) if self.norm is not None else table


def relative_buckets(
    length: int, device: torch.device, buckets: int, max_position: int, log_base: float
) -> Tensor:
    """(S, S) relative positions i - j, log-bucketed beyond ±buckets/2 when ``buckets`` > 0 (DeBERTa-v2's
    make_log_bucket_position; ``log_base`` is log((max_position - 1) / mid) in float32)."""
    ids = torch.arange(length, device=device)
    relative = ids[:, None] - ids[None, :]
    if buckets <= 0 or max_position <= 0:
        return relative
    mid = buckets // 2
    sign = torch.sign(relative)
    inside = (relative < mid) & (relative > -mid)
    magnitude = torch.where(inside, torch.full_like(relative, mid - 1), relative.abs())
    log_pos = torch.ceil(torch.log(magnitude / mid) / log_base * (mid - 1)) + mid
    return torch.where(magnitude <= mid, relative.to(log_pos.dtype), log_pos * sign).long()


class DisentangledAttention(QKVAttention):
    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        position_buckets: int = 256,
        max_relative_positions: int = 512,
        pos_att_type: str = "c2p|p2c",
        share_att_key: bool = True,
        norm_rel_ebd: bool = True,
        layer_norm_eps: float = 1e-7,
    ):
        super().__init__(d_model=d_model, num_heads=num_heads, dropout=dropout)
        terms = [t.strip() for t in pos_att_type.lower().split("|") if t.strip()]
        if any(t not in TERMS for t in terms):
            raise ValueError(
                f"pos_att_type must be '|'-joined terms of {', '.join(TERMS)}, got '{pos_att_type}'"
            )
        if max_relative_positions < 1:
            raise ValueError(f"max_relative_positions must be >= 1, got {max_relative_positions}")
        self.c2p, self.p2c = "c2p" in terms, "p2c" in terms
        self.buckets, self.max_position = position_buckets, max_relative_positions
        self.span = position_buckets if position_buckets > 0 else max_relative_positions
        mid = max(position_buckets // 2, 1)
        ratio = torch.tensor(
            (max_relative_positions - 1) / mid, dtype=torch.float32, device="cpu"
        )  # not meta
        self.log_base = float(torch.log(ratio)) if position_buckets > 0 else 1.0
        self.scale = 1.0 / math.sqrt(self.head_dim * (1 + self.c2p + self.p2c))
        self.share_att_key = share_att_key
        self.pos_key_proj = nn.Linear(d_model, d_model) if self.c2p and not share_att_key else None
        self.pos_query_proj = nn.Linear(d_model, d_model) if self.p2c and not share_att_key else None
        self.position_dropout = nn.Dropout(dropout)
        self.attention_dropout = nn.Dropout(dropout)
        self.table: RelativeTable | None = RelativeTable(
            2 * self.span, d_model, norm=norm_rel_ebd, eps=layer_norm_eps
        )

    def release_table(self) -> RelativeTable | None:
        """Give up this layer's own table: the encoder shares one and passes it to forward."""
        table, self.table = self.table, None
        return table

    def _positions(self, table: Tensor, proj: nn.Linear) -> Tensor:
        rows = proj(table[: 2 * self.span])  # (2·span, D)
        return rows.view(rows.shape[0], self.num_heads, self.head_dim).transpose(0, 1)  # (h, 2·span, dh)

    def forward(self, x: Tensor, mask: Tensor | None = None, relative: Tensor | None = None) -> Tensor:
        batch, seq, d_model = x.shape
        q = self._heads(self.q_proj(x), self.num_heads)  # (B, h, S, dh)
        k = self._heads(self.k_proj(x), self.num_heads)
        v = self._heads(self.v_proj(x), self.num_heads)
        if relative is None:
            table = self.table
            assert table is not None, "a shared relative table must be passed to forward"
            relative = table()
        relative = self.position_dropout(relative)
        buckets = relative_buckets(seq, x.device, self.buckets, self.max_position, self.log_base)  # (S, S)
        index = (
            (buckets + self.span)
            .clamp(0, 2 * self.span - 1)[None, None]
            .expand(batch, self.num_heads, seq, seq)
        )
        bias = torch.zeros((), dtype=q.dtype, device=x.device)
        if self.c2p:
            key_proj = self.pos_key_proj if self.pos_key_proj is not None else self.k_proj
            c2p = q @ self._positions(relative, key_proj).transpose(-1, -2)  # (B, h, S, 2·span)
            bias = bias + torch.gather(c2p, -1, index)
        if self.p2c:
            query_proj = self.pos_query_proj if self.pos_query_proj is not None else self.q_proj
            p2c = k @ self._positions(relative, query_proj).transpose(-1, -2)  # (B, h, S, 2·span)
            p2c_index = (self.span - buckets).clamp(0, 2 * self.span - 1)[None, None].expand_as(index)
            bias = bias + torch.gather(p2c, -1, p2c_index).transpose(-1, -2)
        scores = (q @ k.transpose(-1, -2) + bias) * self.scale  # (B, h, S, S)
        if mask is not None:
            scores = torch.where(key_mask(mask), scores, dtype_min(q.dtype))
        out = self.attention_dropout(torch.softmax(scores, dim=-1)) @ v  # (B, h, S, dh)
        return self.out_proj(out.transpose(1, 2).reshape(batch, seq, d_model))
