"""`zoo export --hf` for every family and every kind of head (issue 14): a tiny random transformers model of
the family (built and saved with test_families' helpers) is imported with a token-classification, embedding
or rerank head, written back with `zoo export --hf`, and loaded by the independent readers: transformers'
Auto classes, sentence-transformers' SentenceTransformer and CrossEncoder. Their outputs must be zoo's
(`zoo embed`, `zoo rerank`) within 1e-5."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_families import PARAMS, TEXTS, padded_batch, save_family

from zoo.cli import cli
from zoo.hf import import_pretrained

transformers = pytest.importorskip("transformers")
st = pytest.importorskip("sentence_transformers")


def zoo(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def export(model, tmp_path):
    model.save(tmp_path / "m")
    result = zoo("export", tmp_path / "m", "--hf", "--json", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["max_abs_diff"] <= 1e-5
    return report


@pytest.mark.parametrize("model_type", PARAMS)
def test_token_classification_round_trips(tmp_path, model_type):
    """The family's *ForTokenClassification -> zoo (token-cls; ModernBERT's with its dense + norm transform) ->
    AutoModelForTokenClassification: the same logits at every real token, and the tag names."""
    reference, _ = save_family(
        tmp_path / "hf", model_type, architecture="ForTokenClassification", num_labels=3
    )
    model = import_pretrained(tmp_path / "hf", head="token-cls", labels=["O", "B-X", "I-X"])
    assert model.spec.head.options["transform"] == (model_type == "modernbert")
    ids, mask = padded_batch(model)
    real = mask.bool()
    with torch.no_grad():
        ours = model(ids, mask)
        assert (ours - reference(input_ids=ids, attention_mask=mask).logits)[real].abs().max() <= 1e-5
    report = export(model, tmp_path)
    assert report["auto_class"] == "AutoModelForTokenClassification"
    loaded = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "out").eval()
    assert loaded.config.id2label == {0: "O", 1: "B-X", 2: "I-X"}
    with torch.no_grad():
        assert (ours - loaded(input_ids=ids, attention_mask=mask).logits)[real].abs().max() <= 1e-5


@pytest.mark.parametrize("model_type", PARAMS)
def test_embedding_model_loads_in_automodel_and_sentence_transformers(tmp_path, model_type):
    """An embedding head (mean pooling, a Dense projection, normalised) -> AutoModel gives zoo's hidden
    states and SentenceTransformer(dir).encode gives `zoo embed`'s vectors."""
    save_family(tmp_path / "hf", model_type)
    model = import_pretrained(
        tmp_path / "hf",
        head="embedding",
        head_options={"pooling": "mean", "dense_dim": 16, "dense_activation": "tanh", "normalize": True},
        seed=1,
    )
    report = export(model, tmp_path)
    assert report["auto_class"] == "AutoModel" and set(report["parity"]) == {"hidden_states", "embeddings"}
    loaded = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
    ids, mask = padded_batch(model)
    with torch.no_grad():
        theirs = loaded(input_ids=ids, attention_mask=mask).last_hidden_state
        assert (model.encoder(ids, mask.bool()) - theirs)[mask.bool()].abs().max() <= 1e-5
    result = zoo("embed", tmp_path / "m", *TEXTS, "--json")
    assert result.exit_code == 0, result.output
    ours = np.asarray(json.loads(result.stdout))
    encoder = st.SentenceTransformer(str(tmp_path / "out"), device="cpu")
    assert [type(m).__name__ for m in encoder] == ["Transformer", "Pooling", "Dense", "Normalize"]
    theirs = encoder.encode(TEXTS, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (len(TEXTS), 16)
    assert np.abs(ours - theirs).max() <= 1e-5


@pytest.mark.parametrize("model_type", PARAMS)
def test_rerank_model_loads_in_cross_encoder(tmp_path, model_type):
    """The family's one-label classifier imported as a rerank head -> CrossEncoder(dir).predict gives
    `zoo rerank`'s scores; the directory imports back as a reranker."""
    save_family(tmp_path / "hf", model_type, classifier=True, num_labels=1)
    model = import_pretrained(tmp_path / "hf", head="rerank")
    report = export(model, tmp_path)
    assert report["architecture"].endswith("ForSequenceClassification")
    query, texts = TEXTS[0], TEXTS[1:]
    original, written = (transformers.AutoTokenizer.from_pretrained(tmp_path / d) for d in ("hf", "out"))
    pair, reference_pair = written(query, texts[0]), original(query, texts[0])
    assert all(pair[key] == reference_pair[key] for key in pair)
    assert ("token_type_ids" in pair) == (model.spec.encoder.options.get("type_vocab_size", 0) > 1)
    result = zoo("rerank", tmp_path / "m", "--query", query, *texts, "--json")
    assert result.exit_code == 0, result.output
    ours = {r["index"]: r["score"] for r in json.loads(result.stdout)}
    cross = st.CrossEncoder(str(tmp_path / "out"), device="cpu")
    assert cross.config.num_labels == 1
    theirs = cross.predict([(query, t) for t in texts])
    assert np.abs(np.asarray([ours[i] for i in range(len(texts))]) - theirs).max() <= 1e-5
    again = import_pretrained(tmp_path / "out", head=None)
    assert again.spec.head.name == "rerank"


@pytest.mark.parametrize("model_type", PARAMS)
def test_masked_lm_round_trips(tmp_path, model_type):
    """The family's *ForMaskedLM -> zoo (mlm head: the transform, the decoder tied to the word embeddings) ->
    AutoModelForMaskedLM: the original's logits at every real token. ELECTRA's generator head projects to a
    narrower embedding, which zoo's mlm head does not: refused in one line."""
    reference, _ = save_family(tmp_path / "hf", model_type, architecture="ForMaskedLM")
    model = import_pretrained(tmp_path / "hf", head="mlm")
    model.save(tmp_path / "m")
    result = zoo("export", tmp_path / "m", "--hf", "-o", tmp_path / "out")
    if model_type == "electra":
        assert result.exit_code == 2 and result.output.count("\n") == 1
        assert "ElectraForMaskedLM: head 'mlm'" in result.output
        return
    assert result.exit_code == 0, result.output
    loaded = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "out").eval()
    ids, mask = padded_batch(model)
    real = mask.bool()
    with torch.no_grad():
        theirs = loaded(input_ids=ids, attention_mask=mask).logits
        assert (reference(input_ids=ids, attention_mask=mask).logits - theirs)[real].abs().max() <= 1e-5
        assert (model(ids, mask) - theirs)[real].abs().max() <= 1e-5
