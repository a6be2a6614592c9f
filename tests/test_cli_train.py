"""zoo finetune / evaluate / predict through the CLI: the whole path, one-line errors, an export served
without torch, and a 2-process torchrun (gloo) run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from test_training import synthetic, write_jsonl

from zoo.cli import cli

TINY = [
    "--arch",
    "transformer",
    "--d-model",
    "32",
    "--num-layers",
    "1",
    "--num-heads",
    "2",
    "--vocab-size",
    "120",
    "--max-length",
    "64",
    "--dropout",
    "0",
    "--set",
    "head.pooling=mean",
]
TRAIN = ["--epochs", "6", "--batch-size", "16", "--lr", "3e-3", "--threads", "1", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def trained(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", synthetic("cls", 480, 1))
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in synthetic("cls", 120, 2)))
    assert invoke("build", *TINY, "-o", tmp_path / "m").exit_code == 0
    result = invoke(
        "finetune",
        tmp_path / "m",
        "--train",
        tmp_path / "train.jsonl",
        "--eval",
        dev,
        "-o",
        tmp_path / "ft",
        *TRAIN,
    )
    assert result.exit_code == 0, result.output
    return tmp_path


def test_finetune_evaluate_predict(trained):
    result = invoke("evaluate", trained / "ft", "--data", trained / "dev.csv", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["task"] == "classification" and report["n"] == 120 and report["accuracy"] >= 0.95
    assert sum(map(sum, report["confusion_matrix"])) == 120
    text = invoke("evaluate", trained / "ft", "--data", trained / "dev.csv")
    assert "confusion matrix (rows: true, columns: predicted)" in text.output
    predicted = invoke("predict", trained / "ft", "the cat was very happy", "it was awful", "--json")
    rows = [json.loads(line) for line in predicted.output.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"] and all(0.5 < r["probability"] <= 1 for r in rows)
    plain = invoke("predict", trained / "ft", "--file", trained / "dev.csv", "--top-k", "2")
    assert plain.exit_code == 0 and len(plain.output.splitlines()) == 120


@pytest.mark.parametrize(
    "args, message",
    [
        (["finetune", "{m}", "--train", "{d}/nope.csv", "-o", "{d}/o"], "error: {d}/nope.csv: no such file"),
        (
            ["finetune", "{m}", "--train", "{d}/bad.csv", "-o", "{d}/o"],
            "error: {d}/bad.csv line 3: no label in column 'label'",
        ),
        (
            ["finetune", "{m}", "--train", "{d}/bad.csv", "--label-column", "lable", "-o", "{d}/o"],
            "error: {d}/bad.csv: no label column 'lable'; did you mean 'label'? columns: text, label",
        ),
        (
            ["finetune", "{m}", "--train", "{d}/one.csv", "-o", "{d}/o"],
            "error: {d}/one.csv: only one label (x) in the data; classification needs at least two",
        ),
        (
            ["finetune", "{m}", "--train", "{d}/bad.jsonl", "-o", "{d}/o"],
            "error: {d}/bad.jsonl line 2: not valid JSON",
        ),
        (
            ["finetune", "{m}", "--train", "{d}/one.csv", "-o", "{d}/o", "--device", "cuda"],
            "error: --device cuda: CUDA is not available on this machine; use --device cpu",
        ),
        (
            ["finetune", "{m}", "--train", "{d}/one.csv", "-o", "{d}/o", "--resume"],
            "error: {d}/o: nothing to resume (no trainer_state.safetensors); run without --resume",
        ),
        (
            ["finetune", "{d}/nomodel", "--train", "{d}/one.csv", "-o", "{d}/o"],
            "error: {d}/nomodel: no such model directory",
        ),
        (
            ["evaluate", "{m}", "--data", "{d}/data.xlsx"],
            "error: {d}/data.xlsx: unsupported data format '.xlsx'; use .csv, .tsv, .jsonl or .txt (one text per line)",
        ),
        (["predict", "{m}"], "error: give some texts or --file"),
    ],
)
def test_data_and_option_errors_are_one_line(tmp_path, args, message):
    if not torch.cuda.is_available() or "--device" not in args:
        (tmp_path / "bad.csv").write_text("text,label\na,x\nb,\n")
        (tmp_path / "one.csv").write_text("text,label\na,x\nb,x\n")
        (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": \n')
        assert invoke("build", *TINY, "-o", tmp_path / "m").exit_code == 0
        fill = {"m": tmp_path / "m", "d": tmp_path}
        result = invoke(*[a.format(**fill) for a in args])
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message.format(**fill)), result.output


def test_unknown_label_at_evaluate(trained):
    (trained / "odd.csv").write_text("text,label\nthe cat,pos\nthe dog,postive\n")
    result = invoke("evaluate", trained / "ft", "--data", trained / "odd.csv")
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {trained / 'odd.csv'} line 3: label 'postive' is not one of the "
        "model's labels (neg, pos); did you mean 'pos'?"
    )


TORCH_FREE = """
import sys
sys.modules["torch"] = None  # any import of torch now fails
from zoo.cli import main
sys.argv = ["zoo"] + sys.argv[1:]
main()
"""


@pytest.mark.slow
def test_export_is_evaluated_and_served_without_torch(trained):
    pytest.importorskip("onnxruntime")
    exported = invoke("export", trained / "ft", "--onnx", "-o", trained / "ex")
    assert exported.exit_code == 0, exported.output
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = [sys.executable, "-c", TORCH_FREE]
    ev = subprocess.run(
        run + ["evaluate", str(trained / "ex"), "--data", str(trained / "dev.csv"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ev.returncode == 0, ev.stderr
    torch_report = json.loads(
        invoke("evaluate", trained / "ft", "--data", trained / "dev.csv", "--json").output
    )
    onnx_report = json.loads(ev.stdout)
    assert onnx_report["confusion_matrix"] == torch_report["confusion_matrix"]
    pr = subprocess.run(
        run + ["predict", str(trained / "ex"), "it was awful", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert pr.returncode == 0, pr.stderr
    assert json.loads(pr.stdout)["label"] == "neg"


def test_inference_modules_do_not_import_torch():
    code = (
        "import sys; import zoo.inference, zoo.metrics, zoo.data, zoo.tokenizer, zoo.cli.evaluate, "
        "zoo.cli.predict; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.slow
def test_torchrun_two_processes_gloo_matches_one_process(tmp_path):
    torchrun = shutil.which("torchrun")
    zoo_exe = shutil.which("zoo")
    if not torchrun or not zoo_exe:
        pytest.skip("torchrun or the zoo script is not on PATH")
    write_jsonl(tmp_path / "train.jsonl", synthetic("cls", 480, 1))
    write_jsonl(tmp_path / "dev.jsonl", synthetic("cls", 120, 2))
    assert invoke("build", *TINY, "-o", tmp_path / "m").exit_code == 0
    # fp32: on a CPU with native bf16, auto trains in bf16, whose rounding differs with the micro-batch shapes
    common = [
        "finetune",
        str(tmp_path / "m"),
        "--train",
        str(tmp_path / "train.jsonl"),
        "--eval",
        str(tmp_path / "dev.jsonl"),
        "--patience",
        "10",
        "--precision",
        "fp32",
        "--device",
        "cpu",  # gloo on the CPU: on a one-GPU machine, auto would give rank 1 cuda:1
        *TRAIN,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    loud = [
        a for a in common if a != "--quiet"
    ]  # progress on: the summary line must come once, not per process
    ddp = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc-per-node",
            "2",
            "--no-python",
            zoo_exe,
            *loud,
            "-o",
            str(tmp_path / "ddp"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stderr.count("best epoch") == 1, ddp.stderr[-3000:]
    single = invoke(*common, "-o", tmp_path / "single")
    assert single.exit_code == 0, single.output
    history = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]  # one writer: no duplicated lines
    assert history[-1]["eval"]["accuracy"] >= 0.95
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["extra"]["training"]["world_size"] == 2
    a = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    b = load_file(str(tmp_path / "single" / "model.safetensors"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    # same global batches and rows; only float summation order differs (Adam amplifies it a little)
    assert worst < 1e-2, f"DDP and single-process weights differ by {worst}"
    single_history = [json.loads(x) for x in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    assert abs(single_history[-1]["eval"]["accuracy"] - history[-1]["eval"]["accuracy"]) <= 0.02
