"""Pre-training: masking statistics, packing, the loss falls, resume == uninterrupted, the mlm head against
transformers' BertForMaskedLM, and fine-tuning a pre-trained model with a task head."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess

import numpy as np
import pytest
import torch
import transformers
from click.testing import CliRunner
from safetensors.torch import load_file
from test_hf import TEXTS, write_vocab

import zoo
from zoo.cli import cli
from zoo.constants import IGNORE_INDEX
from zoo.errors import ZooError
from zoo.hf import import_pretrained
from zoo.tokenizer import encode, train_wordpiece
from zoo.training import TrainConfig, finetune
from zoo.training.corpus import Corpus, documents
from zoo.training.masking import MaskingConfig, mask_tokens
from zoo.training.pretrain import PretrainRecipe, pretrain
from zoo.training.pretrain_config import PretrainConfig, parse_duration

ANIMALS, VERBS, PLACES = (
    ["cat", "dog", "bird", "fish", "cow"],
    ["sat", "ran", "ate", "slept"],
    ["mat", "park", "tree"],
)
TINY = {"d_model": 32, "num_layers": 2, "num_heads": 2, "ffn_dim": 64, "vocab_size": 120, "max_length": 64}


def write_corpus(path, docs=600, seed=0):
    """Sentences with structure to learn: the same animal twice in each."""
    rng = random.Random(seed)
    lines = []
    for _ in range(docs):
        a = rng.choice(ANIMALS)
        lines.append(f"the {a} {rng.choice(VERBS)} in the {rng.choice(PLACES)} and the {a} slept")
    path.write_text("\n".join(lines) + "\n")
    return path


def fast(**settings):
    return PretrainConfig(
        **{
            "batch_size": 16,
            "max_length": 32,
            "precision": "fp32",
            "num_threads": 1,
            "eval_every": 10,
            **settings,
        }
    )


# ---- masking --------------------------------------------------------------------------------------------
def masking_config(rate=0.3):
    return MaskingConfig(mask_id=4, special_ids=(0, 1, 2, 3, 4), vocab_size=1000, rate=rate)


def test_masking_rate_and_80_10_10_split():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (64, 256), generator=g)
    ids[:, 0], ids[:, 100], ids[:, -5:] = 2, 3, 0  # [CLS], a [SEP], padding
    inputs, labels = mask_tokens(ids, masking_config(), torch.Generator().manual_seed(1))
    chosen = labels != IGNORE_INDEX
    special = torch.isin(ids, torch.tensor([0, 1, 2, 3, 4]))
    assert not chosen[special].any() and torch.equal(inputs[special], ids[special])  # specials never touched
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    rate = chosen.sum().item() / (~special).sum().item()
    assert abs(rate - 0.3) < 0.01
    n = chosen.sum().item()
    to_mask = (inputs[chosen] == 4).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    replaced = 1 - to_mask - kept
    assert abs(to_mask - 0.8) < 0.015 and abs(kept - 0.1) < 0.01 and abs(replaced - 0.1) < 0.01
    assert not torch.isin(inputs[chosen & (inputs != 4) & (inputs != ids)], torch.tensor([0, 1, 2, 3])).any()


def test_whole_word_masking_takes_every_piece_of_a_word():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (32, 240), generator=g)
    starts = torch.zeros_like(ids, dtype=torch.bool)
    starts[:, ::3] = True  # words of three pieces
    _, labels = mask_tokens(ids, masking_config(0.2), torch.Generator().manual_seed(2), starts)
    chosen = (labels != IGNORE_INDEX).view(32, 80, 3)
    assert torch.equal(chosen.all(-1), chosen.any(-1))  # all of a word's pieces or none
    assert abs(chosen[..., 0].float().mean().item() - 0.2) < 0.02


# ---- packing --------------------------------------------------------------------------------------------
def test_packing_makes_full_blocks_from_the_training_documents(tmp_path):
    path = write_corpus(tmp_path / "c.txt", docs=200)
    texts = list(documents(path, 0, None))
    tokenizer = train_wordpiece(texts, 120)
    corpus = Corpus(path, tokenizer, 24, holdout=10, shuffle=8, seed=0)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    train_docs = [t for i, t in enumerate(texts) if i % 10]
    assert list(documents(path, 10, False)) == train_docs
    expected = np.concatenate(
        [[*tokenizer.encode(t, add_special_tokens=False).ids, sep_id] for t in train_docs]
    )
    blocks = list(corpus._pack(corpus._pieces(held_out=False)))
    assert all(len(ids) == 24 and ids[0] == cls_id and starts[0] for ids, starts in blocks)
    bodies = np.concatenate([ids[1:] for ids, _ in blocks])
    assert np.array_equal(bodies, expected[: len(bodies)]) and len(expected) - len(bodies) < 23  # no padding
    stream = corpus.train_blocks()
    first_pass = [next(stream)[0] for _ in range(len(blocks))]
    assert sorted(map(tuple, first_pass)) == sorted(tuple(b[0]) for b in blocks)  # shuffled, nothing lost
    assert [tuple(b) for b in first_pass] != [tuple(b[0]) for b in blocks]
    skipped = corpus.train_blocks(skip=5)
    assert all(np.array_equal(next(skipped)[0], b) for b in first_pass[5:15])  # a resume's stream
    held_ids, _ = corpus.eval_blocks(100)
    held = [t for i, t in enumerate(texts) if i % 10 == 0]
    want = np.concatenate([[*tokenizer.encode(t, add_special_tokens=False).ids, sep_id] for t in held])
    assert np.array_equal(held_ids[:, 1:].reshape(-1), want[: held_ids[:, 1:].size])  # the held-out documents


def test_durations_and_settings():
    assert parse_duration("20m") == 1200 and parse_duration("1.5h") == 5400 and parse_duration("90") == 90
    with pytest.raises(ZooError, match="time-budget"):
        parse_duration("ten minutes")
    with pytest.raises(ZooError, match="--max-steps or --time-budget"):
        PretrainConfig()
    with pytest.raises(ZooError, match="mask-rate"):
        PretrainConfig(max_steps=1, mask_rate=1.5)


# ---- training -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pretraining_lowers_the_mlm_loss_and_the_model_fills_masks(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    model = zoo.build_model("prenorm", "mlm", "sdpa", seed=0, **TINY)
    result = pretrain(
        model, corpus, output=tmp_path / "pre", config=fast(max_steps=60, lr=3e-3), progress=False
    )
    evals = [r["eval"] for r in result.history]
    assert len(evals) == 6
    assert evals[-1]["loss"] < evals[0]["loss"] - 0.5
    assert evals[-1]["accuracy"] > 0.25  # far above chance (1 in ~100)
    train = [loss for _, loss in result.history and []] or [r["train_loss"] for r in result.history]
    assert train[-1] < train[0]
    loaded = zoo.load_model(tmp_path / "pre")
    assert loaded.head.tied and loaded.head.__dict__["_embedding"] is loaded.encoder.token_embedding
    assert "head.decoder.weight" not in load_file(str(tmp_path / "pre" / "model.safetensors"))
    info = loaded.spec.extra["pretraining"]
    assert info["steps"] == 60 and info["tokens"] == 60 * 16 * 32
    out = CliRunner().invoke(
        cli, ["predict", str(tmp_path / "pre"), "the [MASK] sat", "--json", "--top-k", "2"]
    )
    assert out.exit_code == 0, out.output
    assert '"masks": [{"position": 2' in out.output


def test_resume_after_interrupt_equals_an_uninterrupted_run(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", docs=300)
    settings = {"max_steps": 6, "eval_every": 3, "whole_word": True}

    def run(output, **kw):
        return pretrain(
            zoo.build_model("transformer", "mlm", seed=0, **TINY),
            corpus,
            output=output,
            config=fast(**settings),
            progress=False,
            **kw,
        )

    run(tmp_path / "straight")

    def interrupt(step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    first = run(tmp_path / "resumed", on_step=interrupt)
    assert first.interrupted and first.signal == signal.SIGINT
    pretrain(None, corpus, output=tmp_path / "resumed", resume=True, progress=False)
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_pretraining_needs_an_mlm_head(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", docs=50)
    with pytest.raises(ZooError, match="needs an mlm head"):
        pretrain(
            zoo.build_model("transformer", "cls", **TINY),
            corpus,
            output=tmp_path / "o",
            config=fast(max_steps=1),
        )


@pytest.mark.slow
def test_cli_pretrain_then_finetune_replaces_the_mlm_head(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.csv.txt", docs=300)
    runner = CliRunner()
    build = runner.invoke(
        cli,
        [
            "build",
            "--arch",
            "transformer",
            "--head",
            "mlm",
            "-o",
            str(tmp_path / "base"),
            "--set",
            "d_model=32",
            "--set",
            "num_layers=1",
            "--set",
            "num_heads=2",
            "--set",
            "vocab_size=120",
            "--set",
            "max_length=64",
        ],
    )
    assert build.exit_code == 0, build.output
    out = runner.invoke(
        cli,
        [
            "pretrain",
            str(tmp_path / "base"),
            "--data",
            str(corpus),
            "-o",
            str(tmp_path / "pre"),
            "--max-steps",
            "4",
            "--batch-size",
            "8",
            "--max-length",
            "32",
            "--precision",
            "fp32",
            "--eval-every",
            "2",
            "--mask-rate",
            "0.25",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "final eval: mlm loss" in out.output
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"the {a} sat,{a}\n" for a in ANIMALS * 8))
    ft = finetune(
        tmp_path / "pre",
        train,
        output=tmp_path / "ft",
        config=TrainConfig(epochs=1, precision="fp32"),
        progress=False,
    )
    assert ft.epochs_run == 1
    model = zoo.load_model(tmp_path / "ft")
    assert model.spec.head.name == "cls" and model.task.name == "classification"
    assert model.labels == sorted(ANIMALS) and model.spec.extra["pretraining"]["steps"] == 4
    pre = load_file(str(tmp_path / "pre" / "model.safetensors"))
    scratch = zoo.build_model(
        "transformer", "cls", seed=0, d_model=32, num_layers=1, num_heads=2, vocab_size=120, max_length=64
    )
    assert not torch.equal(pre["encoder.token_embedding.weight"], scratch.encoder.token_embedding.weight)
    bad = runner.invoke(
        cli,
        [
            "finetune",
            str(tmp_path / "pre"),
            "--train",
            str(train),
            "-o",
            str(tmp_path / "x"),
            "--head",
            "mlm",
            "--epochs",
            "1",
        ],
    )
    assert bad.exit_code == 2 and "pre-training head" in bad.output


# ---- the mlm head against transformers ------------------------------------------------------------------
def test_mlm_logits_match_transformers_bert_for_masked_lm(tmp_path):
    path = tmp_path / "hf"
    path.mkdir()
    vocab_size = write_vocab(path)
    config = transformers.BertConfig(
        vocab_size=vocab_size + 3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        type_vocab_size=2,
    )
    torch.manual_seed(0)
    reference = transformers.BertForMaskedLM(config).eval()
    with torch.no_grad():  # make every MLM tensor matter: random bias and LayerNorm
        for name, p in reference.cls.named_parameters():
            if "bias" in name or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.5)
    reference.save_pretrained(path, safe_serialization=True)
    transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(
        path
    )
    model = import_pretrained(path, head="mlm")
    assert sorted(model.spec.extra["source"]["imported"]) == [
        "encoder.embeddings",
        "encoder.layer",
        "head.bias",
        "head.dense",
        "head.norm",
    ]
    ids, mask = (torch.from_numpy(a) for a in encode(model.tokenizer, TEXTS, max_length=40))
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask).logits
        got = model(ids, mask)
    real = mask.bool()
    assert got.shape == want.shape
    assert (got[real] - want[real]).abs().max().item() < 1e-5
    model.save(
        tmp_path / "zoo"
    )  # tied weights survive a save (safetensors refuses shared tensors) and a load
    again = zoo.load_model(tmp_path / "zoo")
    with torch.no_grad():
        assert (again(ids, mask)[real] - want[real]).abs().max().item() < 1e-5
    assert again.head.__dict__["_embedding"] is again.encoder.embeddings.word_embeddings


@pytest.mark.slow
def test_torchrun_two_processes_gloo_match_one_process(tmp_path):
    torchrun, zoo_exe = shutil.which("torchrun"), shutil.which("zoo")
    if not torchrun or not zoo_exe:
        pytest.skip("torchrun or the zoo script is not on PATH")
    corpus = write_corpus(tmp_path / "corpus.txt", docs=300)
    zoo.build_model("transformer", "mlm", seed=0, **TINY).save(tmp_path / "base")
    common = [
        "pretrain",
        str(tmp_path / "base"),
        "--data",
        str(corpus),
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--batch-size",
        "16",
        "--max-length",
        "32",
        "--precision",
        "fp32",
        "--device",
        "cpu",  # gloo on the CPU: on a one-GPU machine, auto would give rank 1 cuda:1
        "--threads",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = zoo.load_model(tmp_path / "base")
    base.tokenizer = train_wordpiece(list(documents(corpus, 20, False)), 120)  # both runs share one tokenizer
    base.save(tmp_path / "base")
    ddp = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc-per-node",
            "2",
            "--no-python",
            zoo_exe,
            *common,
            "-o",
            str(tmp_path / "ddp"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stderr.count("final eval") == 1
    single = CliRunner().invoke(cli, [*common, "-o", str(tmp_path / "single")])
    assert single.exit_code == 0, single.output
    assert (
        json.loads((tmp_path / "ddp" / "config.json").read_text())["extra"]["pretraining"]["world_size"] == 2
    )
    a = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    b = load_file(str(tmp_path / "single" / "model.safetensors"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-2, f"DDP and single-process weights differ by {worst}"  # same blocks, same masks


def test_a_time_budget_ends_the_run_and_drives_the_schedule(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", docs=200)
    model = zoo.build_model("transformer", "mlm", seed=0, **TINY)
    result = pretrain(model, corpus, output=tmp_path / "pre", config=fast(time_budget="1s"), progress=False)
    info = zoo.load_model(tmp_path / "pre").spec.extra["pretraining"]
    # the model saved is the best evaluation's, which under load may be the round before the last
    assert info["seconds"] >= 1 and info["steps"] in [r["step"] for r in result.history]
    recipe = PretrainRecipe.__new__(PretrainRecipe)  # the schedule alone: share of the budget spent -> factor
    recipe.config, recipe.budget = fast(time_budget="100s", warmup_ratio=0.1, schedule="wsd"), 100.0
    factors = []
    for spent in (5, 10, 50, 80, 90, 100):
        recipe.elapsed = spent
        factors.append(round(recipe.lr_factor(1), 6))
    assert factors == [0.5, 1.0, 1.0, 1.0, 0.5, 0.0]
    recipe.config = fast(time_budget="100s", warmup_ratio=0.1)  # linear: straight down after warm-up
    recipe.elapsed = 55
    assert recipe.lr_factor(1) == pytest.approx(0.5)
