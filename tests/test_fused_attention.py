"""Performance paths must compute the same function: the one-node ONNX attention, the unmasked fast path."""

from __future__ import annotations

import collections
import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from zoo.export.fused_attention import PackedAttention, packed_attention, packed_attentions
from zoo.export.onnx_export import check_graph, export_dynamo
from zoo.export.runtime import DISABLED_OPTIMIZERS
from zoo.model import build_model
from zoo.nn import attention_bias

TINY = dict(d_model=16, num_layers=2, num_heads=2, vocab_size=40, max_length=32, dropout=0.0)


def _ops(path) -> collections.Counter:
    return collections.Counter((n.domain, n.op_type) for n in onnx.load(str(path)).graph.node)


def _padded_batch(seed: int = 3):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 40, size=(4, 11), dtype=np.int64)
    mask = (np.arange(11)[None, :] < np.array([[11], [6], [0], [9]])).astype(np.int64)  # row 2: all padding
    return ids, mask


@pytest.mark.parametrize(
    "arch,attention,head",
    [("bert", "sdpa", "cls"), ("bert", "mha", "token-cls"), ("transformer", "sdpa", "cls")],
)
def test_softmax_attention_exports_as_one_node_and_matches_eager(tmp_path, arch, attention, head):
    model = build_model(arch, head, attention, seed=0, **TINY).eval()
    originals = [layer for layer in model.modules() if type(layer).__name__.endswith("Attention")]
    example = (torch.randint(1, 40, (2, 8)), torch.ones(2, 8, dtype=torch.long))
    export_dynamo(model, example, tmp_path / "m.onnx", None, 32)
    assert check_graph(tmp_path / "m.onnx") >= 18
    ops = _ops(tmp_path / "m.onnx")
    assert ops[("com.microsoft", "Attention")] == TINY["num_layers"]
    assert ops[("", "Softmax")] == 0
    # the swap is undone: the model holds its own attention modules again
    assert [m for m in model.modules() if type(m).__name__.endswith("Attention")] == originals
    assert not any(isinstance(m, PackedAttention) for m in model.modules())
    session = ort.InferenceSession(
        str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
    )
    ids, mask = _padded_batch()
    with torch.no_grad():
        expected = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    got = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_grouped_query_attention_is_left_unfused(tmp_path):
    model = build_model("bert", "cls", "gqa", seed=0, attention_options={"num_kv_heads": 1}, **TINY).eval()
    example = (torch.randint(1, 40, (2, 8)), torch.ones(2, 8, dtype=torch.long))
    export_dynamo(model, example, tmp_path / "m.onnx", None, 32)
    ops = _ops(tmp_path / "m.onnx")
    assert ops[("com.microsoft", "Attention")] == 0 and ops[("", "Softmax")] + ops[("", "MatMul")] > 0


def test_packed_attention_op_matches_the_explicit_formula():
    torch.manual_seed(0)
    batch, seq, d_model, heads = 2, 5, 8, 2
    x, weight, bias = (
        torch.randn(batch, seq, d_model),
        torch.randn(d_model, 3 * d_model),
        torch.randn(3 * d_model),
    )
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    out = packed_attention(x, weight, bias, mask, heads)
    q, k, v = (x @ weight + bias).split(d_model, dim=-1)
    expected = torch.empty_like(x)
    for b in range(batch):
        for h in range(heads):
            cols = slice(h * 4, (h + 1) * 4)
            scores = q[b, :, cols] @ k[b, :, cols].T / 2.0  # √4
            scores[:, mask[b] == 0] = -torch.inf
            expected[b, :, cols] = torch.softmax(scores, dim=-1) @ v[b, :, cols]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_packed_attentions_restores_modules_when_export_fails():
    model = build_model("bert", "cls", "sdpa", seed=0, **TINY)
    before = list(model.modules())
    with pytest.raises(RuntimeError, match="boom"):
        with packed_attentions(model) as table:
            assert (
                table and sum(isinstance(m, PackedAttention) for m in model.modules()) == TINY["num_layers"]
            )
            raise RuntimeError("boom")
    assert list(model.modules()) == before


def test_attention_bias_skips_unpadded_batches_but_not_in_traces():
    full, padded = torch.ones(2, 4, dtype=torch.long), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert attention_bias(None, torch.float32) is None
    assert attention_bias(full, torch.float32) is None
    bias = attention_bias(padded, torch.float32)
    assert bias.shape == (2, 1, 1, 4)
    assert bias[1, 0, 0, 2] == torch.finfo(torch.float32).min and bias[1, 0, 0, 1] == 0
    traced = torch.jit.trace(lambda m: attention_bias(m, torch.float32), (full,))
    torch.testing.assert_close(traced(padded), bias)  # the trace kept the bias for padded inputs


def test_unpadded_fast_path_matches_the_masked_result():
    model = build_model("bert", "cls", "sdpa", seed=0, **TINY).eval()
    ids = torch.randint(1, 40, (3, 9))
    with torch.no_grad():
        fast = model(ids, torch.ones_like(ids))
        # padding one extra column that every row masks must not change the real tokens' result
        padded_ids = torch.cat([ids, ids[:, :1]], 1)
        masked = model(padded_ids, torch.cat([torch.ones_like(ids), torch.zeros_like(ids[:, :1])], 1))
    torch.testing.assert_close(fast, masked, atol=1e-5, rtol=1e-5)


def test_fused_adamw_matches_the_per_tensor_reference():
    """Same hyper-parameters and decay groups as torch's reference loop; several steps on a well-conditioned
    model (on a deep one, near-zero gradients make any two AdamW implementations drift apart)."""
    from zoo.training.optim import make_optimizer, param_groups

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.LayerNorm(6), torch.nn.Linear(6, 3))
    twin = copy.deepcopy(model)
    fused = make_optimizer(model, 1e-2, 0.01, "cpu")
    reference = torch.optim.AdamW(param_groups(twin, 0.01), lr=1e-2, foreach=False)
    assert fused.defaults["fused"] is True
    assert [g["weight_decay"] for g in fused.param_groups] == [0.01, 0.0]
    x, y = torch.randn(32, 8), torch.randn(32, 3)
    for _ in range(5):
        for net, opt in ((model, fused), (twin, reference)):
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
