"""Attention through torch.nn.functional.scaled_dot_product_attention (fused kernels on CPU and CUDA)."""

from __future__ import annotations

from torch import Tensor

from zoo.nn import QKVAttention, RotaryEmbedding, attention_bias, scaled_dot_product


class SDPAttention(QKVAttention):
    computes_softmax_attention = True

    def __init__(
        self, *, d_model: int, num_heads: int, dropout: float = 0.0, rotary: RotaryEmbedding | None = None
    ):
        super().__init__(d_model=d_model, num_heads=num_heads, dropout=dropout, rotary=rotary)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        return scaled_dot_product(q, k, v, attention_bias(mask, q.dtype), self.active_dropout)


class GroupedQueryAttention(SDPAttention):
    """num_kv_heads key/value heads, each shared by a group of query heads. The default (None) makes real
    groups: about num_heads / 4 key/value heads, at least 2 when num_heads has such a divisor.
    num_kv_heads=1 is multi-query attention; num_kv_heads=num_heads is plain multi-head."""

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        num_kv_heads: int | None = None,
        rotary: RotaryEmbedding | None = None,
    ):
        QKVAttention.__init__(
            self,
            d_model=d_model,
            num_heads=num_heads,
            dropout=dropout,
            rotary=rotary,
            num_kv_heads=default_kv_heads(num_heads) if num_kv_heads is None else num_kv_heads,
        )


class MultiQueryAttention(GroupedQueryAttention):
    """One key/value head shared by every query head: grouped-query attention with num_kv_heads=1."""

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        num_kv_heads: int = 1,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__(
            d_model=d_model, num_heads=num_heads, dropout=dropout, num_kv_heads=num_kv_heads, rotary=rotary
        )


def default_kv_heads(num_heads: int) -> int:
    """The divisor of num_heads strictly between 1 and num_heads closest to max(2, num_heads / 4)
    (8 heads -> 2, 12 -> 3, 16 -> 4); 1 when there is none (1, 2 or a prime number of heads)."""
    divisors = [d for d in range(2, num_heads) if num_heads % d == 0]
    return min(divisors, key=lambda d: abs(d - max(2, num_heads / 4))) if divisors else 1
