"""Fine-tuning: every head learns a separable synthetic task, resume == uninterrupted, batching, schedule,
and the device/precision choices (pure functions, so the CUDA logic is tested on CPU)."""

from __future__ import annotations

import json
import os
import random
import signal

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.device import DistEnv, cpu_threads, dist_env, pick_device, pick_precision
from zoo.errors import ZooError
from zoo.training import TrainConfig, finetune
from zoo.training.batching import epoch_batches, micro_batch
from zoo.training.optim import lr_factor, param_groups

POSITIVE, NEGATIVE = ["good", "great", "nice", "happy"], ["bad", "awful", "sad", "poor"]
FILLER = ["the", "a", "cat", "dog", "sat", "on", "mat", "it", "was", "very", "so", "and"]


def sentence(rng, keywords):
    words = rng.choices(FILLER, k=rng.randint(2, 10))
    for k in keywords:
        words.insert(rng.randint(0, len(words)), k)
    return words


def synthetic(task, n, seed):
    """Rows whose label follows from the keywords in the text."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        if task == "cls":
            y = rng.random() < 0.5
            rows.append(
                {
                    "text": " ".join(sentence(rng, [rng.choice(POSITIVE if y else NEGATIVE)])),
                    "label": "pos" if y else "neg",
                }
            )
        elif task == "multilabel":
            tags = [t for t in ("pos", "neg") if rng.random() < 0.5]
            keys = [rng.choice(POSITIVE if t == "pos" else NEGATIVE) for t in tags]
            rows.append({"text": " ".join(sentence(rng, keys)), "label": tags})
        elif task == "regression":
            count = rng.randint(0, 2)
            rows.append(
                {"text": " ".join(sentence(rng, rng.choices(POSITIVE, k=count))), "label": float(count)}
            )
        else:
            words = sentence(rng, rng.sample(POSITIVE + NEGATIVE, k=rng.randint(1, 3)))
            rows.append(
                {
                    "text": " ".join(words),
                    "label": " ".join("P" if w in POSITIVE else "N" if w in NEGATIVE else "O" for w in words),
                }
            )
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny(head, **options):
    return zoo.build_model(
        "transformer",
        head,
        d_model=32,
        num_layers=1,
        num_heads=2,
        vocab_size=120,
        max_length=64,
        dropout=0.0,
        seed=0,
        head_options=options or None,
    )


FAST = dict(epochs=6, batch_size=16, lr=3e-3, patience=None, num_threads=1)


@pytest.mark.parametrize(
    "head, options",
    [
        ("cls", {"pooling": "mean"}),
        ("multilabel", {"pooling": "mean"}),
        ("regression", {}),
        ("token-cls", {}),
    ],
)
def test_every_head_learns_its_synthetic_task(tmp_path, head, options):
    train = write_jsonl(tmp_path / "train.jsonl", synthetic(head, 480, 1))
    dev = write_jsonl(tmp_path / "dev.jsonl", synthetic(head, 120, 2))
    result = finetune(
        tiny(head, **options),
        train,
        eval=dev,
        output=tmp_path / "ft",
        progress=False,
        config=TrainConfig(**FAST),
    )
    final = result.history[-1]["eval"]
    if head == "cls":
        assert final["accuracy"] >= 0.95
    elif head == "multilabel":
        assert final["exact_match"] >= 0.95
    elif head == "token-cls":
        assert final["accuracy"] >= 0.95 and final["macro_f1"] >= 0.95
    else:  # rounding the predicted count must recover it
        from zoo.data import read_table
        from zoo.inference import ModelPredictor, row_logits
        from zoo.tokenizer import encode_rows, ids_of

        model = zoo.load_model(tmp_path / "ft")
        predictor = ModelPredictor(model)
        ids = ids_of(encode_rows(model.tokenizer, read_table(dev).texts, max_length=predictor.max_length))
        predicted = np.rint(np.concatenate(row_logits(predictor, ids)))
        truth = np.array([r["label"] for r in synthetic(head, 120, 2)])
        assert (predicted == truth).mean() >= 0.95 and final["r2"] >= 0.9


def test_output_is_a_model_directory_with_labels_metrics_and_state(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", synthetic("cls", 64, 1))
    finetune(
        tiny("cls"),
        train,
        eval=train,
        output=tmp_path / "ft",
        progress=False,
        config=TrainConfig(epochs=2, batch_size=16, patience=None),
    )
    model = zoo.load_model(tmp_path / "ft")
    assert model.labels == ["neg", "pos"] and model.spec.sizes["num_labels"] == 2
    assert model.spec.tokenizer["max_length"] == 64 and model.spec.tokenizer["trained_on"] == "train.jsonl"
    assert model.tokenizer.get_vocab_size() <= 120
    lines = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and "macro_f1" in lines[0]["eval"]
    assert sorted(p.name for p in (tmp_path / "ft").iterdir()) == [
        "config.json",
        "curves.png",
        "metrics.jsonl",
        "model.safetensors",
        "tokenizer.json",
        "trainer_state.safetensors",
    ]
    with pytest.raises(ZooError, match="holds a training run; pass --resume"):
        finetune(tiny("cls"), train, output=tmp_path / "ft", progress=False)


def test_head_is_resized_to_the_label_set(tmp_path):
    rows = [{"text": f"w{i % 3} x", "label": f"c{i % 3}"} for i in range(30)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    finetune(tiny("cls"), train, output=tmp_path / "ft", progress=False, config=TrainConfig(epochs=1))
    assert zoo.load_model(tmp_path / "ft").head.classifier.out_features == 3


def test_resume_after_interrupt_equals_an_uninterrupted_run(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", synthetic("cls", 96, 1))
    config = dict(epochs=2, batch_size=16, grad_accum=2, lr=3e-3, patience=None)

    def model():
        m = zoo.build_model(
            "transformer",
            "cls",
            d_model=32,
            num_layers=1,
            num_heads=2,
            vocab_size=120,
            max_length=64,
            dropout=0.2,
            seed=0,
        )  # dropout: the RNG state must be restored too
        return m

    finetune(model(), train, output=tmp_path / "straight", progress=False, config=TrainConfig(**config))

    def interrupt(step):
        if step == 4:  # mid epoch 1 (6 steps per epoch)
            os.kill(os.getpid(), signal.SIGINT)

    first = finetune(
        model(),
        train,
        output=tmp_path / "resumed",
        progress=False,
        config=TrainConfig(**config),
        on_step=interrupt,
    )
    assert first.interrupted and first.epochs_run == 0
    assert not (tmp_path / "resumed" / "model.safetensors").exists()  # no half-made model
    second = finetune(None, train, output=tmp_path / "resumed", progress=False, resume=True)
    assert not second.interrupted and second.epochs_run == 2
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_resume_without_state_is_a_clear_error(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", synthetic("cls", 8, 1))
    with pytest.raises(
        ZooError, match=r"nothing to resume \(no trainer_state.safetensors\); run without --resume"
    ):
        finetune(None, train, output=tmp_path / "empty", resume=True)


def test_length_grouped_batches_cover_every_row_once_and_pad_little():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 200, size=1000)
    batches = epoch_batches(lengths, 32, seed=0, epoch=0, mega_batches=10)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    for b in batches:
        assert np.all(np.diff(lengths[b]) <= 0)  # sorted within each batch, longest first

    def padding(bs):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in bs)

    assert padding(batches) < 0.2 * padding(epoch_batches(lengths, 32, 0, 0, group_by_length=False))
    again = epoch_batches(lengths, 32, seed=0, epoch=0, mega_batches=10)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not np.array_equal(np.concatenate(epoch_batches(lengths, 32, 0, 1, mega_batches=10)), flat)


def test_micro_batches_split_the_global_batch_across_steps_and_processes():
    batch = np.arange(10)
    pieces = [micro_batch(batch, m, 2, r, 2) for m in range(2) for r in range(2)]
    assert np.array_equal(np.concatenate(pieces), batch)
    assert all(
        len(p) >= 1 for p in [micro_batch(np.arange(3), m, 2, r, 2) for m in range(2) for r in range(2)]
    )


def test_lr_warms_up_then_decays_to_zero():
    factors = [lr_factor(s, total=10, warmup=2) for s in range(1, 11)]
    assert factors == pytest.approx([0.5, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0.0])


def test_no_weight_decay_on_biases_and_norms():
    model = tiny("cls")
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("bias") or "norm" in names[id(p)] for p in no_decay["params"])
    assert any("norm" in names[id(p)] for p in no_decay["params"])
    assert all(p.ndim == 2 for p in decay["params"])


def test_device_and_precision_choices():
    assert pick_device("auto", cuda_available=False) == "cpu"
    assert pick_device("auto", cuda_available=True, local_rank=1) == "cuda:1"
    assert pick_device("cuda:0", cuda_available=True, local_rank=1) == "cuda:0"
    with pytest.raises(ZooError, match="CUDA is not available on this machine; use --device cpu"):
        pick_device("cuda", cuda_available=False)
    with pytest.raises(ZooError, match="unknown device 'tpu'"):
        pick_device("tpu", cuda_available=True)
    assert pick_precision("auto", "cuda:0", bf16_supported=True) == "bf16"
    assert pick_precision("auto", "cuda:0", bf16_supported=False) == "fp16"
    assert pick_precision("auto", "cpu", bf16_supported=False) == "fp32"
    assert pick_precision("bf16", "cpu", bf16_supported=False) == "bf16"
    with pytest.raises(ZooError, match="--precision fp16 needs a CUDA device"):
        pick_precision("fp16", "cpu", bf16_supported=False)
    with pytest.raises(ZooError, match="does not support bfloat16"):
        pick_precision("bf16", "cuda", bf16_supported=False)


def test_torchrun_environment_and_threads():
    env = dist_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert env == DistEnv(3, 4, 1, 2) and env.distributed and not env.is_main
    assert dist_env({}) == DistEnv() and DistEnv().is_main
    assert cpu_threads(1, requested=3) == 3
    assert cpu_threads(10**6) == 1


def test_config_errors_are_one_line():
    with pytest.raises(ZooError, match=r"^batch-size must be a positive integer, got 0$"):
        TrainConfig(batch_size=0)
    with pytest.raises(ZooError, match=r"^warmup-ratio must be in \[0, 1\), got 1.5$"):
        TrainConfig(warmup_ratio=1.5)


def test_every_setting_is_declared_once_and_offered_by_the_cli():
    """TrainConfig is the one source of the settings: each CLI flag of `zoo finetune` comes from a field,
    and each field (but the API-only ones) has a flag, with the same default."""
    from zoo.cli.finetune import finetune as command
    from zoo.training.config import TrainConfig, cli_fields, default_of

    flags = {p.name: p for p in command.params}
    for spec in cli_fields():
        assert spec.name in flags, f"TrainConfig.{spec.name} has no flag"
        assert flags[spec.name].default == default_of(spec), spec.name
        assert flags[spec.name].help == spec.metadata["help"]
    assert TrainConfig(**{s.name: flags[s.name].default for s in cli_fields()}) == TrainConfig()


def test_the_train_state_round_trips_and_older_checkpoints_load():
    from zoo.training.state import TrainState

    state = TrainState(
        epoch=2,
        batch=3,
        step=40,
        best={"epoch": 1, "metric": "macro_f1", "value": 0.5},
        bad_epochs=1,
        history=[{"epoch": 1}],
        losses=[[1, 0.7], [2, 0.6]],
    )
    assert TrainState.from_dict(state.to_dict()) == state
    older = {k: v for k, v in state.to_dict().items() if k != "losses"}  # written before losses were kept
    assert TrainState.from_dict(older) == TrainState(**{**older, "losses": []})
