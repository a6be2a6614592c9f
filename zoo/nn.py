"""Building blocks for parts: the q/k/v attention skeleton, masks, rotary positions, pooling.

Built-in parts use these, and plugin authors may too; nothing here is a registered part.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def dtype_min(dtype: torch.dtype) -> float:
    """``torch.finfo(dtype).min`` in a form TorchScript compiles (it has no ``torch.finfo``).

    Eager code gets exactly ``torch.finfo(dtype).min``; a scripted graph gets the same constant for the
    floating dtypes a model runs in (float32, float16, bfloat16, float64).
    """
    if not torch.jit.is_scripting():
        return torch.finfo(dtype).min
    if dtype == torch.float16:
        return -65504.0
    if dtype == torch.bfloat16:
        return -3.3895313892515355e38
    if dtype == torch.float64:
        return -1.7976931348623157e308
    return -3.4028234663852886e38


def padding_bias(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive attention bias: 0 where ``allowed`` is True, the dtype's minimum elsewhere.

    A finite minimum (not -inf) keeps rows that allow nothing (padding queries) free of NaN.
    """
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, dtype_min(dtype))


def key_mask(mask: Tensor) -> Tensor:
    """(B, S) padding mask -> (B, 1, 1, S), broadcastable over heads and queries."""
    return mask.to(torch.bool)[:, None, None, :]


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


def attention_bias(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """The additive key-padding bias for ``mask``, or None when no key is padded.

    None lets scaled_dot_product_attention take its unmasked fast path (as transformers does). A
    traced, scripted or exported graph always keeps the bias, since it must also serve padded batches.
    """
    if mask is None:
        return None
    # TorchScript compiles only the bias path; it skips a branch only when is_scripting() stands alone
    if not torch.jit.is_scripting():  # noqa: SIM102
        if not _tracing() and bool(mask.all()):
            return None
    return padding_bias(key_mask(mask), dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) applied to queries and keys of shape (B, h, S, dh)."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.inv_freq: Tensor  # the buffer's type, for type checkers

    def forward(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        positions = torch.arange(q.shape[-2], device=q.device, dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq)  # (S, dh/2)
        cos = torch.cat([angles.cos(), angles.cos()], dim=-1).to(q.dtype)
        sin = torch.cat([angles.sin(), angles.sin()], dim=-1).to(q.dtype)
        return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


class QKVAttention(nn.Module):
    """Multi-head attention skeleton: it owns the q/k/v/out projections; subclasses write ``attend``.

    ``num_kv_heads`` below ``num_heads`` shares each key/value head across a group of query heads.
    ``rotary``, when an encoder passes one, rotates queries and keys before ``attend``.
    """

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        num_kv_heads: int | None = None,
        bias: bool = True,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = d_model // num_heads
        self.dropout_p = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, num_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.rotary = rotary

    def _heads(self, x: Tensor, n: int) -> Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, n, self.head_dim).transpose(1, 2)  # (B, n, S, dh)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        batch, seq, d_model = x.shape
        q = self._heads(self.q_proj(x), self.num_heads)
        k = self._heads(self.k_proj(x), self.num_kv_heads)
        v = self._heads(self.v_proj(x), self.num_kv_heads)
        if self.rotary is not None:
            q, k = self.rotary(q, k)
        if self.num_kv_heads != self.num_heads:  # (B, kv, S, dh) -> (B, h, S, dh)
            groups = self.num_heads // self.num_kv_heads
            k = k[:, :, None].expand(batch, self.num_kv_heads, groups, seq, self.head_dim).reshape(q.shape)
            v = v[:, :, None].expand(batch, self.num_kv_heads, groups, seq, self.head_dim).reshape(q.shape)
        out = self.attend(q, k, v, mask)  # (B, h, S, dh)
        return self.out_proj(out.transpose(1, 2).reshape(batch, seq, d_model))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    # A subclass whose ``attend`` is exactly softmax(QKᵀ/√d + padding)·V sets this True.
    computes_softmax_attention = False

    def is_plain_softmax_attention(self) -> bool:
        """Whether an export may replace this module by one fused Attention operator: softmax attention over
        its own q/k/v/out projections, with biases, no rotary positions and no grouped key/value heads."""
        return (
            self.computes_softmax_attention
            and self.rotary is None
            and self.num_kv_heads == self.num_heads
            and self.q_proj.bias is not None
            and self.head_dim * self.num_heads == self.q_proj.in_features
        )

    @property
    def active_dropout(self) -> float:
        return self.dropout_p if self.training else 0.0


def scaled_dot_product(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, dropout: float) -> Tensor:
    """softmax(QKᵀ/√d + bias)·V through PyTorch's fused kernel."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)


POOLINGS = ("cls", "mean", "max", "weighted-mean", "last", "mean-sqrt-len")


def pool(hidden: Tensor, mask: Tensor | None, how: str) -> Tensor:
    """(B, S, D) -> (B, D) over the real tokens (``mask`` True), as sentence-transformers' Pooling does:
    the first token ('cls'), the mean ('mean'), the maximum ('max'), the mean weighted by position 1..S
    ('weighted-mean'), the last real token ('last', right padding) or the sum over √length ('mean-sqrt-len')."""
    if how == "cls":
        return hidden[:, 0]
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, S, 1)
    if how == "mean":
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    if how == "mean-sqrt-len":
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0).sqrt()
    if how == "max":
        return (
            hidden.masked_fill(~mask.to(torch.bool).unsqueeze(-1), dtype_min(hidden.dtype)).max(dim=1).values
        )
    if how == "weighted-mean":
        positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)
        weights = weights * positions[None, :, None]
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    if how == "last":
        last = (mask.long().sum(dim=1) - 1).clamp(min=0)  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(
        "unknown pooling '" + how + "' (choices: cls, mean, max, weighted-mean, last, mean-sqrt-len)"
    )  # POOLINGS; scriptable


def activation(name: str) -> nn.Module:
    """The feed-forward activation by its Hugging Face config name."""
    table = {
        "gelu": lambda: nn.GELU(),
        "gelu_new": lambda: nn.GELU(approximate="tanh"),
        "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
        "relu": lambda: nn.ReLU(),
        "silu": lambda: nn.SiLU(),
    }
    if name not in table:
        raise ValueError(f"unsupported activation '{name}' (choices: {', '.join(table)})")
    return table[name]()


class _GatherRows(torch.autograd.Function):
    """all_gather along dim 0 with gradients: backward sums every process's gradient for the full
    gathered tensor and keeps this process's rows."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int]) -> Tensor:
        import torch.distributed as dist

        most = max(sizes)
        padded = torch.cat([x, x.new_zeros(most - x.shape[0], *x.shape[1:])]) if x.shape[0] < most else x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, dist.get_rank()
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def gather_rows(x: Tensor) -> Tensor:
    """Every process's rows of ``x`` (N_r, ...) in rank order, differentiable; the row counts may
    differ by process. Without a process group, ``x`` itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return _GatherRows.apply(x, [int(s.item()) for s in sizes])


__all__ = [
    "POOLINGS",
    "QKVAttention",
    "RotaryEmbedding",
    "activation",
    "attention_bias",
    "dtype_min",
    "gather_rows",
    "key_mask",
    "padding_bias",
    "pool",
    "scaled_dot_product",
]
