"""Adapters (issue 16): LoRA through the register_adapters hook, on every encoder × attention; training only the
adapter and the head; the small adapter directory over its base; merging; export; the wrong base refused."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import zoo
from zoo import hookimpl, testing
from zoo.cli import cli
from zoo.errors import ZooError
from zoo.model import build_model, load_model

SIZES = dict(testing.TINY_SIZES, dropout=0.0)


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, SIZES["vocab_size"], (3, 8), generator=g)
    mask = (torch.arange(8)[None, :] < torch.tensor([8, 6, 3])[:, None]).long()
    return ids, mask


def base_dir(tmp_path, encoder="bert", attention="sdpa", name="base", seed=0):
    build_model(encoder, "cls", attention, seed=seed, **SIZES).save(tmp_path / name)
    return tmp_path / name


def adapted(tmp_path, encoder="bert", attention="sdpa", **options):
    model = load_model(base_dir(tmp_path, encoder, attention)).add_adapter("lora", **options)
    with torch.no_grad():  # a trained-looking adapter: B away from zero, a changed head
        for name, p in model.named_parameters():
            if "lora_B" in name or name.startswith("head."):
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize("attention", testing.parts("attention"))
@pytest.mark.parametrize("encoder", testing.parts("encoder"))
def test_lora_on_every_encoder_and_attention(tmp_path, encoder, attention):
    """Equal to the base at initialisation, then only adapter and head parameters get gradients, and the
    merged model matches the adapted one within 1e-5."""
    base = load_model(base_dir(tmp_path, encoder, attention)).eval()
    ids, mask = batch()
    with torch.no_grad():
        reference = base(ids, mask)
    model = base.add_adapter("lora", r=4, targets="qkv,out,ffn")
    with torch.no_grad():
        assert torch.equal(model(ids, mask), reference)
    wrapped = [n for n, m in model.encoder.named_modules() if hasattr(m, "lora_A")]
    assert len(wrapped) == SIZES["num_layers"] * 6 or encoder != "transformer"
    assert any(n.endswith("q_proj") for n in wrapped) and any(n.endswith("out_proj") for n in wrapped)
    assert any(not n.split(".")[-1].endswith("proj") for n in wrapped), "ffn layers were not targeted"
    model.train()
    model.loss(model(ids, mask), torch.tensor([0, 1, 2]), mask).backward()
    for name, p in model.named_parameters():
        trains = "lora_" in name or name.startswith("head.")
        assert p.requires_grad == trains, name
        assert (p.grad is not None) == trains, name
    model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
        adapted_out = model(ids, mask)
        merged = model.merged()(ids, mask)
    assert not torch.allclose(adapted_out, reference, atol=1e-4)
    assert (merged - adapted_out).abs().max() <= 1e-5


def test_default_targets_are_every_projection(tmp_path):
    model = load_model(base_dir(tmp_path, "prenorm", "gqa")).add_adapter("lora")
    wrapped = {n for n, m in model.encoder.named_modules() if hasattr(m, "lora_A")}
    assert {n.split(".")[-1] for n in wrapped} >= {"k_proj", "out_proj", "q_proj", "v_proj"}
    ffn = [n for n in wrapped if not n.endswith("proj")]
    assert ffn and len(wrapped) == len(ffn) + 4 * SIZES["num_layers"]
    assert model.adapter.adapter.options == {"r": 8, "alpha": 16.0, "dropout": 0.05, "targets": None}


def test_lora_scaling_is_alpha_over_r(tmp_path):
    model = load_model(base_dir(tmp_path)).add_adapter("lora", r=2, alpha=6, targets="out")
    layer = model.encoder.layer[0].attention.out_proj
    with torch.no_grad():
        layer.lora_B.normal_()
        x = torch.randn(5, SIZES["d_model"])
        want = x @ layer.weight.T + layer.bias + 3.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
        assert torch.allclose(layer.eval()(x), want, atol=1e-5)


def test_optimizer_gets_only_the_trainable_parameters(tmp_path):
    from zoo.training.optim import make_optimizer

    model = adapted(tmp_path)
    optimizer = make_optimizer(model, 1e-3, 0.01, "cpu")
    given = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert given == {id(p) for p in model.parameters() if p.requires_grad}
    assert 0 < len(given) < len(list(model.parameters()))


def test_save_load_same_outputs_and_small_directory(tmp_path):
    model = adapted(tmp_path, r=2)
    ids, mask = batch()
    with torch.no_grad():
        want = model(ids, mask)
    model.save(tmp_path / "ad")
    files = sorted(p.name for p in (tmp_path / "ad").iterdir())
    assert files == ["adapter.json", "adapter.safetensors", "config.json"]
    config = json.loads((tmp_path / "ad" / "adapter.json").read_text())
    assert (
        config["base"]["path"] == str((tmp_path / "base").resolve()) and len(config["base"]["sha256"]) == 64
    )
    assert config["adapter"] == {
        "name": "lora",
        "plugin": "zoo.adapters",
        "options": {"r": 2, "alpha": 16.0, "dropout": 0.05, "targets": None},
    }
    loaded = zoo.load_model(tmp_path / "ad")
    assert loaded.adapter is not None
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask), want)
    adapter_size = (tmp_path / "ad" / "adapter.safetensors").stat().st_size
    base_size = (tmp_path / "base" / "model.safetensors").stat().st_size
    head_size = sum(p.numel() * 4 for p in model.head.parameters())
    lora_size = sum(p.numel() * 4 for n, p in model.named_parameters() if "lora_" in n)
    assert adapter_size < 2 * (head_size + lora_size) + 4096 and adapter_size < base_size / 2


def test_wrong_base_is_refused_in_one_line(tmp_path):
    adapted(tmp_path).save(tmp_path / "ad")
    base_dir(tmp_path, seed=1)  # other weights in the same place
    with pytest.raises(ZooError) as info:
        load_model(tmp_path / "ad")
    message = str(info.value)
    assert (
        "\n" not in message
        and "sha256" in message
        and "loads only onto the base it was trained on" in message
    )
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "ad"), "some text"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and result.output.startswith("error: ")


def test_merge_command_writes_a_plain_model(tmp_path):
    model = adapted(tmp_path)
    model.save(tmp_path / "ad")
    result = CliRunner().invoke(cli, ["merge", str(tmp_path / "ad"), "-o", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "merged").iterdir()) == ["config.json", "model.safetensors"]
    merged = load_model(tmp_path / "merged")
    assert merged.adapter is None and merged.spec.extra["adapter"]["merged"]["adapter"]["name"] == "lora"
    assert all(type(m) is nn.Linear for m in merged.modules() if isinstance(m, nn.Linear))
    ids, mask = batch(3)
    with torch.no_grad():
        assert (merged(ids, mask) - model(ids, mask)).abs().max() <= 1e-5
    again = CliRunner().invoke(cli, ["merge", str(tmp_path / "merged"), "-o", str(tmp_path / "x")])
    assert again.exit_code == 2 and "not an adapter directory" in again.output


def test_export_of_an_adapter_directory_is_the_merged_model(tmp_path):
    pytest.importorskip("onnxruntime")
    model = adapted(tmp_path)
    model.save(tmp_path / "ad")
    result = CliRunner().invoke(
        cli, ["export", str(tmp_path / "ad"), "--onnx", "-o", str(tmp_path / "x"), "--json"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output[result.output.index("{") :])
    assert manifest["parity_passed"] is True
    from zoo.export.runtime import OnnxModel

    ids, mask = batch(4)
    onnx = OnnxModel(tmp_path / "x").logits(ids.numpy(), mask.numpy())
    with torch.no_grad():
        assert abs(onnx - model(ids, mask).numpy()).max() <= 1e-4
    assert load_model(tmp_path / "ad").adapter is not None  # exporting merged a copy


def test_bad_options_and_targets_are_one_line_errors(tmp_path):
    model = load_model(base_dir(tmp_path))
    for options, message in (
        ({"r": 0}, "adapter 'lora': r must be a positive integer"),
        ({"targets": "qkv,fnn"}, "unknown target 'fnn'; did you mean 'ffn'?"),
        ({"rank": 4}, "unknown option 'rank' for adapter 'lora'"),
    ):
        with pytest.raises(ZooError, match=message):
            load_model(tmp_path / "base").add_adapter("lora", **options)
    built = build_model("bert", "cls", seed=0, **SIZES)  # never saved: no base to record
    with pytest.raises(ZooError, match="needs its base model on disk"):
        built.add_adapter("lora")
    model.add_adapter("lora")
    with pytest.raises(ZooError, match="is the adapter's base model"):
        model.save(tmp_path / "base")


def test_finetune_with_lora_trains_only_adapter_and_head(tmp_path):
    rows = [("good great fine nice", "pos"), ("bad awful poor sad", "neg")] * 40
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    build_model("transformer", "cls", seed=0, **SIZES).save(tmp_path / "base")
    result = CliRunner().invoke(
        cli,
        [
            "finetune",
            str(tmp_path / "base"),
            "--train",
            str(tmp_path / "train.csv"),
            "-o",
            str(tmp_path / "ft"),
            "--adapter",
            "lora",
            "--set",
            "adapter.r=4",
            "--set",
            "adapter.targets=qkv,out,ffn",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--threads",
            "1",
            "--quiet",
            "--no-curves",
        ],
    )
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "ft").iterdir()}
    assert {"adapter.json", "adapter.safetensors", "config.json", "tokenizer.json"} <= names
    assert "model.safetensors" not in names
    model = load_model(tmp_path / "ft")
    base = load_model(tmp_path / "base")
    assert model.adapter.adapter.options["r"] == 4 and model.labels == ["neg", "pos"]
    merged = model.merged()
    changed = {
        k
        for k, v in base.state_dict().items()
        if k.startswith("encoder.") and not torch.equal(v, merged.state_dict()[k])
    }
    assert changed and all(
        k.rsplit(".", 2)[-2] in {"q_proj", "k_proj", "v_proj", "out_proj", "0", "2"} for k in changed
    )  # only the adapted linear layers moved (transformer's ff.0, ff.2)
    assert all(
        torch.equal(v, merged.state_dict()[k])
        for k, v in base.state_dict().items()
        if "embedding" in k or "norm" in k
    )
    predicted = CliRunner().invoke(cli, ["predict", str(tmp_path / "ft"), "good great", "--json"])
    assert predicted.exit_code == 0, predicted.output
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ft" / "trainer_state.safetensors"), framework="pt") as f:
        saved = {k[len("model.") :] for k in f.keys() if k.startswith("model.")}  # noqa: SIM118 (safe_open is not iterable)
    assert saved == set(model.trained_state_dict())  # the checkpoint holds the adapter and head only
    resumed = CliRunner().invoke(
        cli,
        [
            "finetune",
            str(tmp_path / "base"),
            "--train",
            str(tmp_path / "train.csv"),
            "-o",
            str(tmp_path / "ft"),
            "--adapter",
            "lora",
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--threads",
            "1",
            "--quiet",
            "--no-curves",
            "--resume",
        ],
    )
    assert resumed.exit_code == 0, resumed.output


def test_finetune_set_takes_adapter_options_only(tmp_path):
    result = CliRunner().invoke(
        cli, ["finetune", str(tmp_path), "--train", "x.csv", "-o", str(tmp_path / "o"), "--set", "d_model=3"]
    )
    assert result.exit_code == 2 and "--set d_model: expected adapter.OPTION=VALUE" in result.output


def test_an_inline_adapter_plugin(tmp_path, inline_plugin):
    """A plugin's adapter goes through the same hook: here, BitFit-style (train the encoder's biases)."""

    def bias_only(*, encoder, scale: float = 1.0):
        for name, p in encoder.named_parameters():
            if name.endswith("bias"):
                p.requires_grad_(True)

    class Plugin:
        @hookimpl
        def register_adapters(self, register):
            register("bitfit", bias_only, description="train the biases")

    inline_plugin(Plugin(), "test-bitfit")
    assert "bitfit" in zoo.list_parts()["adapter"]
    model = load_model(base_dir(tmp_path)).add_adapter("bitfit")
    trained = model.trained_state_dict()
    assert trained and all(k.endswith("bias") or k.startswith("head.") for k in trained)
    model.save(tmp_path / "ad")
    loaded = load_model(tmp_path / "ad")
    assert loaded.adapter.adapter.ref == "test-bitfit:bitfit"
    merged = loaded.merged()  # nothing to fold: the biases are the base's own tensors
    ids, mask = batch()
    with torch.no_grad():
        assert torch.equal(merged(ids, mask), loaded(ids, mask))


def test_parts_lists_adapters():
    result = CliRunner().invoke(cli, ["parts", "--kind", "adapter", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["adapter"][0]["name"] == "lora"


def hf_bert(path, seed=0, **settings):
    """A tiny random BERT saved by transformers in ``path`` with a WordPiece vocabulary; returns the model."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        **settings,
    )
    torch.manual_seed(seed)
    model = transformers.BertModel(config)
    model.save_pretrained(path)
    (path / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)])
    )
    return model


def test_matches_peft_on_a_transformers_bert(tmp_path):
    """The same LoRA weights through peft on transformers' BERT and through zoo on the imported model."""
    peft = pytest.importorskip("peft")
    pytest.importorskip("transformers")
    from zoo.hf import import_pretrained

    reference = hf_bert(tmp_path / "hf", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).eval()
    import_pretrained(tmp_path / "hf", num_labels=2).save(tmp_path / "base")
    model = load_model(tmp_path / "base").add_adapter(
        "lora", r=4, alpha=8, dropout=0.0, targets="qkv,out,ffn"
    )
    peft_config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        init_lora_weights=False,
        target_modules=[
            "query",
            "key",
            "value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        ],
    )
    theirs = peft.get_peft_model(reference, peft_config).eval()
    ours = {
        "query": "attention.q_proj",
        "key": "attention.k_proj",
        "value": "attention.v_proj",
        "attention.output.dense": "attention.out_proj",
        "intermediate.dense": "intermediate",
        "output.dense": "output",
    }
    copied = 0
    with torch.no_grad():
        for name, module in theirs.named_modules():
            if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
                continue
            layer = int(name.split(".layer.")[1].split(".")[0])
            tail = name.split(f".layer.{layer}.")[1]
            key = next(
                k
                for k in sorted(ours, key=len, reverse=True)
                if tail == k or (tail.endswith(k) and (k != "output.dense" or "attention" not in tail))
            )
            target = model.encoder.layer[layer].get_submodule(ours[key])
            target.lora_A.copy_(module.lora_A["default"].weight)
            target.lora_B.copy_(module.lora_B["default"].weight)
            copied += 1
    assert copied == 2 * 6
    model.eval()
    ids = torch.randint(5, 40, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
        got = model.encoder(ids, mask.bool())
        merged = model.merged().encoder(ids, mask.bool())
    real = mask.bool()
    assert (got - want)[real].abs().max() <= 1e-5
    assert (merged - want)[real].abs().max() <= 1e-5


def test_finetune_an_adapter_straight_over_a_hugging_face_checkpoint(tmp_path):
    """`zoo finetune HF_DIR --adapter lora`: no imported copy of the base; the adapter directory records the
    checkpoint and loads onto it (the same outputs as the model in memory); other weights there are refused."""
    hf = tmp_path / "hf"
    hf_bert(hf)
    rows = [("w1 w2 w3 w4", "pos"), ("w9 w8 w7 w6", "neg")] * 24
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    args = ["finetune", str(hf), "--train", str(tmp_path / "train.csv"), "-o", str(tmp_path / "ft")]
    args += [
        "--adapter",
        "lora",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "-q",
        "--no-curves",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "ft" / "adapter.json").read_text())
    assert record["base"]["path"] == str(hf.resolve())
    assert not (tmp_path / "ft" / "model.safetensors").exists()
    model = load_model(tmp_path / "ft")
    ids, mask = torch.randint(5, 40, (2, 7)), torch.ones(2, 7, dtype=torch.long)
    from zoo.hf import import_pretrained

    base = import_pretrained(hf, num_labels=2)
    with torch.no_grad():  # the encoder's untouched weights are the checkpoint's
        assert torch.equal(
            model.encoder.embeddings.word_embeddings.weight, base.encoder.embeddings.word_embeddings.weight
        )
        merged = model.merged()
        assert (merged(ids, mask) - model(ids, mask)).abs().max() <= 1e-5
    predicted = CliRunner().invoke(cli, ["predict", str(tmp_path / "ft"), "w1 w2", "--json"])
    assert predicted.exit_code == 0, predicted.output
    hf_bert(tmp_path / "hf", seed=1)  # another checkpoint in its place
    refused = CliRunner().invoke(cli, ["predict", str(tmp_path / "ft"), "w1 w2"])
    assert refused.exit_code == 2 and "loads only onto the base it was trained on" in refused.output


def test_several_adapters_over_one_base_switch_in_one_process(tmp_path):
    """Two adapters trained over one base (different heads and label sets) load into one model; switching gives
    each one's own outputs, labels and task; another base or another adapter shape is one clear error."""
    base = load_model(base_dir(tmp_path)).eval()
    for seed, (name, labels) in enumerate([("a", ["x", "y", "z"]), ("b", ["neg", "pos"])]):
        model = load_model(tmp_path / "base").add_adapter("lora", r=4)
        if len(labels) != SIZES["num_labels"]:
            model.head = build_model("bert", "cls", "sdpa", seed=seed, **{**SIZES, "num_labels": 2}).head
            model.spec.sizes["num_labels"] = 2
        model.spec.labels = labels
        torch.manual_seed(seed)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n or n.startswith("head."):
                    p.add_(torch.randn_like(p) * 0.1)
        model.save(tmp_path / name)
    ids, mask = batch()
    with torch.no_grad():
        alone = {name: load_model(tmp_path / name).eval()(ids, mask) for name in "ab"}
        model = load_model(tmp_path / "a").load_adapter(tmp_path / "b").eval()
        assert model.adapter_names == ["a", "b"]
        assert torch.equal(model(ids, mask), alone["a"]) and model.labels == ["x", "y", "z"]
        model.set_adapter("b")
        assert torch.equal(model(ids, mask), alone["b"]) and model.labels == ["neg", "pos"]
        assert model.adapter_names == ["b", "a"]
        assert torch.equal(model.set_adapter("a")(ids, mask), alone["a"])
    assert sum(p.numel() for p in model.encoder.parameters()) < 1.5 * sum(
        p.numel() for p in base.encoder.parameters()
    )
    with pytest.raises(ZooError, match="no adapter 'c'; loaded: a, b"):
        model.set_adapter("c")
    load_model(tmp_path / "base").add_adapter("lora", r=8).save(tmp_path / "r8")
    with pytest.raises(ZooError, match="differs from this model's lora"):
        model.load_adapter(tmp_path / "r8")
    with pytest.raises(ZooError, match="already loaded"):
        model.load_adapter(tmp_path / "b")
