"""Sigmoid attention against the paper's formula, written out here from the module's own weights."""

import math

import pytest
import torch
from zoo_sigmoid_attention.attention import SigmoidAttention


def reference(module, x, length, bias=None):
    """out_proj(σ(QKᵀ/√d + b)·V) over the first `length` tokens of one sequence, head by head."""
    x = x[:length]
    h, dh = module.num_heads, module.head_dim
    q, k, v = module.q_proj(x), module.k_proj(x), module.v_proj(x)
    b = -math.log(length) if bias is None else bias
    heads = []
    for i in range(h):
        qi, ki, vi = (t[:, i * dh : (i + 1) * dh] for t in (q, k, v))
        heads.append(torch.sigmoid(qi @ ki.T / math.sqrt(dh) + b) @ vi)
    return module.out_proj(torch.cat(heads, dim=-1))


@pytest.mark.parametrize("bias", [None, 0.0, -3.0])
def test_matches_the_formula_on_padded_rows(bias):
    torch.manual_seed(0)
    module = SigmoidAttention(d_model=12, num_heads=3, bias=bias).eval()
    x = torch.randn(2, 7, 12)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    with torch.no_grad():
        out = module(x, mask)
        for row, length in enumerate((7, 4)):
            torch.testing.assert_close(
                out[row, :length], reference(module, x[row], length, bias), atol=1e-6, rtol=1e-5
            )


def test_weights_are_not_normalised_like_softmax():
    """With b = −log n and all scores 0, every weight is σ(−log n) = 1/(n+1): rows sum to n/(n+1)."""
    module = SigmoidAttention(d_model=4, num_heads=1)
    q = k = torch.zeros(1, 1, 5, 4)
    v = torch.eye(5, 4)[None, None].clone()
    v[..., :] = 1.0
    out = module.attend(q, k, v, None)
    torch.testing.assert_close(out, torch.full_like(out, 5 / 6))


def test_bias_must_be_finite():
    with pytest.raises(ValueError, match="bias must be a finite number or None, got inf"):
        SigmoidAttention(d_model=8, num_heads=2, bias=float("inf"))
