"""Each attention variant against a reference written here from its formula, on a padded batch."""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo.manager import get_registry
from zoo.model import BoundAttention

B, S, D, H = 2, 9, 32, 4


def make(name: str, seed: int = 0, **options):
    torch.manual_seed(seed)
    part = get_registry().resolve("attention", name)
    return BoundAttention(part, options)(d_model=D, num_heads=H, dropout=0.0).eval()


@pytest.fixture
def batch():
    torch.manual_seed(1)
    x = torch.randn(B, S, D)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, 5:] = False  # second row: 5 real tokens, 4 padding
    return x, mask


def projections(attn, x, kv_heads=H):
    dh = D // H
    q = (x @ attn.q_proj.weight.T + attn.q_proj.bias).view(B, S, H, dh).transpose(1, 2)
    k = (x @ attn.k_proj.weight.T + attn.k_proj.bias).view(B, S, kv_heads, dh).transpose(1, 2)
    v = (x @ attn.v_proj.weight.T + attn.v_proj.bias).view(B, S, kv_heads, dh).transpose(1, 2)
    k = k.repeat_interleave(H // kv_heads, dim=1)
    v = v.repeat_interleave(H // kv_heads, dim=1)
    return q, k, v


def softmax_reference(attn, x, mask, bias=0.0, kv_heads=H):
    """softmax(QKᵀ/√dh + bias, keys masked) V, then the output projection."""
    q, k, v = projections(attn, x, kv_heads)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D // H) + bias
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, S, D)
    return out @ attn.out_proj.weight.T + attn.out_proj.bias


def real(t, mask):
    return t[mask]


@pytest.mark.parametrize("name", ["mha", "sdpa"])
def test_softmax_attention_matches_formula(name, batch):
    x, mask = batch
    attn = make(name)
    torch.testing.assert_close(
        real(attn(x, mask), mask), real(softmax_reference(attn, x, mask), mask), atol=1e-5, rtol=1e-5
    )


def test_mha_and_sdpa_agree_with_the_same_weights(batch):
    x, mask = batch
    mha, sdpa = make("mha"), make("sdpa", seed=5)
    sdpa.load_state_dict(mha.state_dict())
    assert (mha(x, mask) - sdpa(x, mask))[mask].abs().max() <= 1e-5


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_gqa_shares_key_value_heads(kv_heads, batch):
    x, mask = batch
    attn = make("gqa", num_kv_heads=kv_heads)
    assert attn.k_proj.weight.shape == (kv_heads * D // H, D)
    torch.testing.assert_close(
        real(attn(x, mask), mask),
        real(softmax_reference(attn, x, mask, kv_heads=kv_heads), mask),
        atol=1e-5,
        rtol=1e-5,
    )


def test_linear_attention_matches_quadratic_formula(batch):
    x, mask = batch
    attn = make("linear")
    q, k, v = projections(attn, x)
    phi_q, phi_k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    weights = (phi_q @ phi_k.transpose(-1, -2)) * mask[:, None, None, :]  # (B, h, S, S), explicit
    out = (weights @ v) / (weights.sum(-1, keepdim=True) + attn.eps)
    expected = out.transpose(1, 2).reshape(B, S, D) @ attn.out_proj.weight.T + attn.out_proj.bias
    torch.testing.assert_close(real(attn(x, mask), mask), real(expected, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [0, 1, 3, 100])
def test_local_attention_sees_only_its_window(window, batch):
    x, mask = batch
    attn = make("local", window=window)
    i = torch.arange(S)
    outside = ((i[:, None] - i[None, :]).abs() > window).float() * -1e30
    torch.testing.assert_close(
        real(attn(x, mask), mask),
        real(softmax_reference(attn, x, mask, bias=outside), mask),
        atol=1e-5,
        rtol=1e-5,
    )


def test_alibi_matches_paper_slopes_and_distance_bias(batch):
    from zoo.plugins.attention.alibi import alibi_slopes

    assert alibi_slopes(8).tolist() == [2 ** -(i + 1) for i in range(8)]  # the paper's 1/2 ... 1/256
    assert alibi_slopes(4).tolist() == [2 ** -(2 * (i + 1)) for i in range(4)]
    x, mask = batch
    attn = make("alibi")
    i = torch.arange(S)
    bias = -alibi_slopes(H)[:, None, None] * (i[:, None] - i[None, :]).abs()
    torch.testing.assert_close(
        real(attn(x, mask), mask),
        real(softmax_reference(attn, x, mask, bias=bias), mask),
        atol=1e-5,
        rtol=1e-5,
    )


def test_rotary_scores_depend_only_on_relative_position():
    from zoo.nn import RotaryEmbedding

    torch.manual_seed(0)
    rope = RotaryEmbedding(8)
    q_vec, k_vec = torch.randn(8), torch.randn(8)
    q, k = rope(q_vec.expand(1, 1, 12, 8), k_vec.expand(1, 1, 12, 8))
    scores = q[0, 0] @ k[0, 0].T  # (12, 12)
    torch.testing.assert_close(scores[2, 5], scores[6, 9])
    torch.testing.assert_close(scores[7, 1], scores[10, 4])
    assert not torch.allclose(scores[2, 5], scores[2, 6])


@pytest.mark.parametrize("name", get_registry().names("attention"))
def test_dropout_only_in_training(name):
    torch.manual_seed(0)
    part = get_registry().resolve("attention", name)
    attn = BoundAttention(part, {})(d_model=D, num_heads=H, dropout=0.5)
    x = torch.randn(B, S, D)
    attn.eval()
    assert torch.equal(attn(x, None), attn(x, None))
    attn.train()
    assert not torch.equal(attn(x, None), attn(x, None)), f"attention '{name}' applies no dropout in training"


def test_tutorial_transformer_block_matches_formulas():
    """The `transformer` encoder with `mha` is the tutorial's post-LN block, written out here by hand."""
    torch.manual_seed(0)
    model = zoo.build_model(
        "transformer",
        "cls",
        "mha",
        d_model=D,
        num_heads=H,
        num_layers=2,
        ffn_dim=64,
        vocab_size=50,
        max_length=16,
        dropout=0.0,
    ).eval()
    enc = model.encoder
    ids = torch.randint(0, 50, (B, S))
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, 6:] = False

    def layer_norm(t, ln):
        mu = t.mean(-1, keepdim=True)
        var = ((t - mu) ** 2).mean(-1, keepdim=True)
        return (t - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias

    x = enc.token_embedding.weight[ids] + enc.position_embedding.weight[:S]
    for block in enc.blocks:
        attended = softmax_reference(block.attention, x, mask)
        x = layer_norm(attended + x, block.norm1)
        lin1, lin2 = block.ff[0], block.ff[2]
        hidden = torch.clamp(x @ lin1.weight.T + lin1.bias, min=0)  # ReLU
        x = layer_norm(hidden @ lin2.weight.T + lin2.bias + x, block.norm2)
    torch.testing.assert_close(enc(ids, mask)[mask], x[mask], atol=1e-5, rtol=1e-5)
