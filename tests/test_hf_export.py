"""`zoo export --hf` (issue 14): a zoo model whose parts map onto a transformers architecture is written as a
directory transformers loads (AutoModelForSequenceClassification, AutoTokenizer) and reproduces zoo's logits;
a model with a part that has no transformers equivalent is refused in one line."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import cli
from zoo.hf import import_pretrained
from zoo.tokenizer import encode

transformers = pytest.importorskip("transformers")

TEXTS = ["the cat sat on the mat", "a very good film", "awful plot, sad actors sat down on the mat again"]


def bert_checkpoint(path):
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
    transformers.BertForSequenceClassification(config).save_pretrained(path, safe_serialization=True)
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
        (["--arch", "bert", "--head", "mlm"], "head 'mlm' has no transformers equivalent"),
        (["--arch", "bert", "--head", "cls"], "head 'cls' with cls pooling and no pooler"),
        (
            ["--arch", "modernbert", "--head", "token-cls"],
            "head 'token-cls' (ModernBertForTokenClassification",
        ),
        (["--arch", "bert", "--head", "rerank", "--attention", "alibi"], "attention 'alibi'"),
    ],
    ids=["attention", "encoder", "head", "pooler", "modernbert-token", "rerank-attention"],
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
