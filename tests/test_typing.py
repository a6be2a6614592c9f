"""zoo's public types catch a plugin's mistakes (issue 21): mypy, run on a plugin module that gets the contracts
wrong, flags each mistake and nothing else, and a plugin scaffolded by `zoo plugin new` for every kind is clean.

One mypy run checks all of it (mypy reads torch's hints once; its cache lives in tmp_path). zoo is found through
MYPYPATH in this checkout; what mypy reports in zoo itself is .ci/check's business, so imported modules are silent.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.cli.scaffold import KINDS
from zoo.spec import ENCODER_SIZES

api = pytest.importorskip("mypy.api")
ROOT = Path(__file__).resolve().parents[1]

# Each line that gets a contract wrong ends with "# E: <mypy error codes>"; every other line must pass.
WRONG_PLUGIN = """
from __future__ import annotations

from torch import nn

from zoo import hookimpl
from zoo.hf import Checkpoint, EncoderImport
from zoo.tasks import Task
from zoo.types import (
    AdapterRegister,
    AttentionFactory,
    AttentionRegister,
    EncoderRegister,
    HeadArgs,
    HeadRegister,
    ImporterRegister,
    TaskRegister,
)


class MyAttention(nn.Module):
    def __init__(self, *, d_model: int, num_heads: int, dropout: float, scale: float = 1.0) -> None:
        super().__init__()


class MyHead(nn.Module):
    def __init__(self, *, d_model: int, num_labels: int, dropout: float) -> None:
        super().__init__()


class MyTask(Task):
    main_metric = "accuracy"


class NotATask:
    pass


def returns_a_number(*, d_model: int, num_heads: int, dropout: float) -> int:
    return d_model


def forgets_num_heads(*, d_model: int, dropout: float) -> nn.Module:
    return nn.Identity()


def import_it(checkpoint: Checkpoint) -> EncoderImport:
    return EncoderImport("bert", {})


def import_nothing(checkpoint: Checkpoint) -> dict[str, object]:
    return {}


def bitfit(*, encoder: nn.Module, layers: str = "all") -> None:
    pass


def returns_the_encoder(*, encoder: nn.Module) -> nn.Module:
    return encoder


@hookimpl
def register_attention(register: AttentionRegister) -> None:
    register("mine", MyAttention, description="fine", aliases=("my",), capabilities={"onnx": False})
    register("lazy", "my_plugin.attention:MyAttention")
    register("typo", MyAttention, descripton="a misspelt keyword")  # E: call-arg
    register("task", MyAttention, task="classification")  # E: call-arg
    register("number", returns_a_number)  # E: arg-type
    register("two-keywords", forgets_num_heads)  # E: arg-type
    register("aliases", MyAttention, aliases="my")  # E: arg-type
    register(MyAttention)  # E: call-arg arg-type


@hookimpl
def register_encoders(register: EncoderRegister) -> None:
    register("attention-as-encoder", MyAttention)  # E: arg-type


@hookimpl
def register_heads(register: HeadRegister) -> None:
    register("head", MyHead, task="classification")
    register("attention-as-head", MyAttention, task="classification")  # E: arg-type
    register("task-as-number", MyHead, task=3)  # E: arg-type


@hookimpl
def register_tasks(register: TaskRegister) -> None:
    register("task", MyTask)
    register("not-a-task", NotATask)  # E: arg-type


@hookimpl
def register_importers(register: ImporterRegister) -> None:
    register("my-bert", import_it)
    register("no-import", import_nothing)  # E: arg-type


@hookimpl
def register_adapters(register: AdapterRegister) -> None:
    register("bitfit", bitfit)
    register("returns", returns_the_encoder)  # E: arg-type


factory: AttentionFactory = MyAttention
head_args: HeadArgs = {"d_model": 8, "num_labels": 2}  # E: typeddict-item
"""


def mypy(paths: list[Path], cache: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, str]]:
    """(file name, line, error code) for each error mypy reports in ``paths``."""
    monkeypatch.setenv("MYPYPATH", str(ROOT))
    out, err, _ = api.run(
        [
            "--cache-dir",
            str(cache),
            "--follow-imports=silent",  # zoo and torch themselves: .ci/check's business
            "--check-untyped-defs",
            "--disallow-untyped-defs",
            "--warn-unused-ignores",
            "--strict-equality",
            "--show-error-codes",
            "--no-pretty",
            *map(str, paths),
        ]
    )
    assert "error: " in out or "Success" in out, out + err  # mypy ran (a crash says neither)
    found = re.findall(r"^(.+?):(\d+): error: .*\[([a-z-]+)\]$", out, re.M)
    return [(Path(f).name, int(line), code) for f, line, code in found]


@pytest.mark.slow
def test_mypy_flags_each_wrong_use_of_the_plugin_types_and_passes_the_scaffolded_plugins(
    tmp_path, monkeypatch
):
    wrong = tmp_path / "wrong" / "my_wrong_plugin.py"
    wrong.parent.mkdir()
    wrong.write_text(textwrap.dedent(WRONG_PLUGIN))
    expected = {
        ("my_wrong_plugin.py", number, code)
        for number, line in enumerate(wrong.read_text().splitlines(), 1)
        for codes in re.findall(r"# E: ([a-z -]+)$", line)
        for code in codes.split()
    }
    assert len(expected) == 14

    scaffolded = []
    for kind in KINDS:  # every kind `zoo plugin new` writes
        out = tmp_path / "scaffold" / kind
        result = CliRunner().invoke(
            cli, ["plugin", "new", f"zoo-typed-{kind}", "--kind", kind, "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        scaffolded += sorted(out.rglob("*.py"))
    assert len(scaffolded) == 3 * len(KINDS) + 1  # __init__, the part module(s) and the test, per package

    errors = mypy([wrong, *scaffolded], tmp_path / "mypy-cache", monkeypatch)
    in_wrong = {e for e in errors if e[0] == wrong.name}
    assert in_wrong == expected, (
        f"missed: {sorted(expected - in_wrong)}; unexpected: {sorted(in_wrong - expected)}"
    )
    assert [e for e in errors if e[0] != wrong.name] == [], "a scaffolded plugin does not type-check"


def test_the_typed_contracts_are_the_ones_zoo_passes():
    """The TypedDicts in zoo.types are what zoo.model passes each factory (CONTRACT_ARGS is made from them)."""
    from zoo.model import CONTRACT_ARGS
    from zoo.types import AdapterArgs, AttentionArgs, EncoderArgs, HeadArgs

    assert set(EncoderArgs.__required_keys__) == {"attention", *ENCODER_SIZES}
    assert CONTRACT_ARGS["attention"] == {"d_model", "num_heads", "dropout", "rotary"}
    assert CONTRACT_ARGS["head"] == set(HeadArgs.__required_keys__) == {"d_model", "num_labels", "dropout"}
    assert CONTRACT_ARGS["adapter"] == set(AdapterArgs.__required_keys__) == {"encoder"}
    assert set(AttentionArgs.__required_keys__) < CONTRACT_ARGS["attention"]


def test_the_types_module_imports_without_torch(tmp_path):
    """Plugin modules import zoo.types at start-up (`zoo --help` loads them): it must stay torch-free."""
    import subprocess
    import sys

    code = "import sys, zoo.types, zoo.hookspecs; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
