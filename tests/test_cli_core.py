"""`zoo build`, `zoo parts`, `zoo plugins` and their errors, through click's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import cli

TINY = ["--d-model", "16", "--num-heads", "2", "--num-layers", "1", "--vocab-size", "40"]


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_build_writes_a_loadable_model_and_summary(tmp_path):
    out = tmp_path / "m"
    result = run(
        "build",
        "--arch",
        "transformer",
        "--attention",
        "gqa",
        "--set",
        "attention.num_kv_heads=2",
        "--head",
        "cls",
        "--num-labels",
        "3",
        "--d-model",
        "32",
        "--num-layers",
        "2",
        "--num-heads",
        "4",
        "--vocab-size",
        "60",
        "--output",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "attention  gqa" in result.output and "(zoo.attention) num_kv_heads=2" in result.output
    model = zoo.load_model(out)
    assert f"parameters {model.num_parameters():,}" in result.output
    assert model.encoder.blocks[0].attention.num_kv_heads == 2
    config = json.loads((out / "config.json").read_text())
    assert (
        config["sizes"]["num_labels"] == 3
        and config["format_version"] == 2
        and config["parts"]["task"]["name"] == "classification"
    )
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_build_same_seed_same_weights(tmp_path):
    for name in ("a", "b"):
        assert run("build", *TINY, "--seed", "7", "--output", str(tmp_path / name)).exit_code == 0
    a, b = zoo.load_model(tmp_path / "a"), zoo.load_model(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_build_json_and_labels(tmp_path):
    result = run(
        "build",
        *TINY,
        "--head",
        "multilabel",
        "--labels",
        "spam,ham,eggs",
        "--set",
        "head.pooling=mean",
        "--json",
        "--output",
        str(tmp_path / "m"),
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["head"] == "zoo.heads:multilabel" and info["sizes"]["num_labels"] == 3
    assert zoo.load_model(tmp_path / "m").labels == ["spam", "ham", "eggs"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--attention", "spda"],
            "error: unknown attention 'spda'; did you mean 'sdpa'? choices: alibi, disentangled, gqa,",
        ),
        (["--arch", "transfomer"], "error: unknown encoder 'transfomer'; did you mean 'transformer'?"),
        (["--head", "clss"], "error: unknown head 'clss'; did you mean 'cls'?"),
        (
            ["--set", "attention.windw=3", "--attention", "local"],
            "error: unknown option 'windw' for attention 'local'; did you mean 'window'? options: window",
        ),
        (
            ["--set", "attention.window=3"],
            "error: unknown option 'window' for attention 'sdpa'; it takes no options",
        ),
        (
            ["--set", "zzz.window=3"],
            "error: --set zzz.window: unknown prefix 'zzz'; the prefix must be one of",
        ),
        (["--set", "bogus"], "error: --set expects KEY=VALUE"),
        (
            ["--set", "atention.window=3"],
            "error: --set atention.window: unknown prefix 'atention'; did you mean "
            "'attention'? the prefix must be one of attention, encoder, head",
        ),
        (["--d-model", "30", "--num-heads", "4"], "error: d_model (30) must be divisible by num_heads (4)"),
        (["--set", "d_modl=3"], "error: unknown option 'd_modl'; did you mean 'd_model'?"),
        (["--labels", "a,b", "--num-labels", "3"], "error: num_labels (3) does not match the 2 labels given"),
        (
            ["--attention", "gqa", "--set", "attention.num_kv_heads=3"],
            "error: cannot build transformer/gqa/cls: num_heads (4) must be divisible by num_kv_heads (3)",
        ),
    ],
)
def test_build_errors_are_one_line_exit_2(tmp_path, args, message):
    result = run("build", "--output", str(tmp_path / "m"), *args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(message), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "m"
    assert run("build", *TINY, "--output", str(out)).exit_code == 0
    before = (out / "model.safetensors").read_bytes()
    result = run("build", *TINY, "--seed", "1", "--output", str(out))
    assert result.exit_code == 2
    assert result.output == f"error: {out} already exists and is not empty; pass --overwrite to replace it\n"
    assert (out / "model.safetensors").read_bytes() == before
    assert run("build", *TINY, "--seed", "1", "--overwrite", "--output", str(out)).exit_code == 0
    assert (out / "model.safetensors").read_bytes() != before


def test_misspelt_command_suggests():
    result = run("biuld")
    assert result.exit_code == 2
    assert "no such command 'biuld'; did you mean 'build'?" in result.output


def test_parts_table_and_json():
    table = run("parts")
    assert table.exit_code == 0
    assert table.output.splitlines()[0].split() == ["KIND", "NAME", "ALIASES", "PLUGIN", "DESCRIPTION"]
    assert any(
        line.split()[:4] == ["attention", "sdpa", "-", "zoo.attention"] for line in table.output.splitlines()
    )
    data = json.loads(run("parts", "--json").output)
    assert set(data) == {"attention", "encoder", "head", "task", "importer", "adapter"}
    assert {p["name"]: p["task"] for p in data["head"]}["cls"] == "classification"
    assert [p["name"] for p in json.loads(run("parts", "--json", "--kind", "task").output)["task"]] == [
        "classification",
        "embedding",
        "mlm",
        "multilabel",
        "regression",
        "rerank",
        "token-classification",
    ]
    gqa = next(p for p in data["attention"] if p["name"] == "gqa")
    assert gqa["aliases"] == [] and gqa["capabilities"]["onnx"] is True and gqa["description"]
    assert [
        p["name"] for p in json.loads(run("parts", "--json", "--kind", "encoder").output)["encoder"]
    ] == zoo.list_parts()["encoder"]


def test_plugins_lists_builtins():
    data = json.loads(run("plugins", "--json").output)
    builtin = {p["name"]: p for p in data if p["builtin"]}
    assert set(builtin) == {"zoo.attention", "zoo.encoders", "zoo.heads", "zoo.tasks", "zoo.adapters"}
    assert builtin["zoo.adapters"]["parts"]["adapter"] == ["lora"]
    assert builtin["zoo.encoders"]["hooks"] == ["register_encoders", "register_importers"]
    assert builtin["zoo.encoders"]["parts"]["importer"] == [
        "bert",
        "roberta",
        "xlm-roberta",
        "camembert",
        "distilbert",
        "electra",
        "deberta-v2",
        "modernbert",
    ]
    assert builtin["zoo.heads"]["parts"]["head"] == [
        "cls",
        "multilabel",
        "regression",
        "token-cls",
        "embedding",
        "rerank",
        "mlm",
    ]
    assert "zoo.attention" in run("plugins").output


def test_debug_shows_traceback(tmp_path):
    result = CliRunner().invoke(
        cli, ["--debug", "build", "--attention", "spda", "--output", str(tmp_path / "m")]
    )
    assert isinstance(result.exception, zoo.ZooError)


def test_python_dash_m_zoo():
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "parts", "--kind", "head"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "token-cls" in result.stdout
