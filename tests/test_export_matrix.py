"""Every attention x every encoder x every head exports to ONNX and TorchScript and matches eager.

The parametrisation reads the live registry, so a part that any installed plugin registers joins the
matrix. Each case checks twice: the manifest's own parity report (3 probe shapes, none the traced one),
and an independent run here, on a shape no one used yet (batch 5 x 23, two padded rows), through
onnxruntime and torch.jit.load directly rather than through zoo.export's runners.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from zoo.export import export_model
from zoo.manager import get_registry
from zoo.model import build_model
from zoo.tasks import head_task, load_task

# (kind, name) -> why that part is left out of the matrix.
EXCLUDED: dict[tuple[str, str], str] = {
    ("attention", "mqa"): "gqa's class with num_kv_heads=1, which the gqa rows export",
}
# Options that make a part compute something the defaults would not exercise at these lengths.
OPTIONS = {
    ("attention", "local"): {"window": 2},  # narrower than every probe, so the band matters
    ("attention", "gqa"): {"num_kv_heads": 1},  # key/value heads shared across query heads
    ("encoder", "bert"): {"sep_token_id": 3},  # token types derived from [SEP] inside the graph
    ("attention", "disentangled"): {"position_buckets": 8, "max_relative_positions": 32},  # log buckets at 23
}
SIZES = dict(d_model=16, num_layers=1, num_heads=2, vocab_size=40, max_length=32, num_labels=3, dropout=0.0)
TOLERANCE = 1e-4


def _names(kind: str) -> list:
    out = []
    for part in get_registry().parts(kind):
        reason = EXCLUDED.get((kind, part.name))
        if reason is None and (
            part.capabilities.get("onnx") is False or part.capabilities.get("torchscript") is False
        ):
            reason = f"{kind} '{part.name}' declares it cannot export ({part.capabilities})"
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out.append(
            pytest.param(part.ref if _clashes(kind, part.name) else part.name, marks=marks, id=part.name)
        )
    return out


def _clashes(kind: str, name: str) -> bool:
    return name in get_registry().clashes(kind)


def _unseen_batch(seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, SIZES["vocab_size"], size=(5, 23), dtype=np.int64)
    ids[:, 4] = 3  # a [SEP] in every row, so BERT's second segment is exercised
    mask = np.ones_like(ids)
    mask[1, 11:] = 0
    mask[3, 2:] = 0
    ids[mask == 0] = 0
    return ids, mask


@pytest.mark.slow
@pytest.mark.parametrize("head", _names("head"))
@pytest.mark.parametrize("encoder", _names("encoder"))
@pytest.mark.parametrize("attention", _names("attention"))
def test_part_combination_exports_and_matches_eager(attention, encoder, head, tmp_path):
    bare = lambda ref: ref.rpartition(":")[2]  # noqa: E731
    fixed = load_task(head_task(head)).num_outputs  # a task with one score per text sizes its head itself
    model = build_model(
        encoder,
        head,
        attention,
        seed=0,
        **{**SIZES, "num_labels": fixed or SIZES["num_labels"]},
        attention_options=OPTIONS.get(("attention", bare(attention))),
        encoder_options=OPTIONS.get(("encoder", bare(encoder))),
        head_options=OPTIONS.get(("head", bare(head))),
    ).eval()
    manifest = export_model(model, tmp_path / "out", onnx=True, torchscript=True, atol=TOLERANCE, rtol=0.0)

    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    for section in ("onnx", "torchscript"):
        report = manifest[section]["parity"]
        assert report["passed"], report
        shapes = [tuple(s["shape"]) for s in report["shapes"]]
        assert tuple(manifest["trace_shape"]) not in shapes
        assert {b for b, _ in shapes} >= {1, 3} and any(s["padded_rows"] for s in report["shapes"])
        assert all(s["max_abs_diff"] <= TOLERANCE for s in report["shapes"])

    ids, mask = _unseen_batch()
    with torch.no_grad():
        expected = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    got_onnx = session.run(manifest["outputs"][:1], {"input_ids": ids, "attention_mask": mask})[0]
    np.testing.assert_allclose(got_onnx, expected, atol=TOLERANCE, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "torch.jit.load is deprecated"
        scripted = torch.jit.load(str(tmp_path / "out" / "model.pt"))
    with torch.no_grad():
        got_ts = scripted(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(got_ts, expected, atol=TOLERANCE, rtol=0)
