"""zoo-sigmoid-attention's tests: zoo's conformance kit on the attention, and a fast start-up."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from zoo import testing
from zoo.cli import cli
from zoo.manager import plugin_infos

PART = "zoo-sigmoid-attention:sigmoid"  # 'plugin:name' stays unambiguous even if another plugin has a 'sigmoid' too


def test_the_plugin_is_installed_and_registers_its_part():
    info = {i.name: i for i in plugin_infos()}["zoo-sigmoid-attention"]
    assert info.errors == []
    assert info.parts == {"attention": ["sigmoid"]}
    assert (info.distribution, info.version) == ("zoo-sigmoid-attention", "0.1.0")


def test_the_attention_passes_the_conformance_kit():
    # checked with every built-in encoder and the cls head, ONNX and TorchScript parity included.
    testing.check_part("attention", PART)


@pytest.mark.parametrize("options", [{"bias": -2.0}, {"num_kv_heads": 1}])
def test_its_options_pass_the_kit(options):
    testing.check_part("attention", PART, options=options, export=False)


def test_every_head_on_sigmoid_attention():
    for head in testing.builtin_names("head"):
        testing.check_model(encoder="prenorm", attention=PART, head=head, focus="attention", export=False)


def test_build_from_the_command_line_records_the_plugin(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "build",
            "--attention",
            "sigmoid",
            "--set",
            "attention.bias=-1.5",
            "--d-model",
            "32",
            "--num-layers",
            "1",
            "-o",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["parts"]["attention"] == {
        "name": "sigmoid",
        "plugin": "zoo-sigmoid-attention",
        "options": {"bias": -1.5, "num_kv_heads": None},
    }


def test_importing_the_plugin_module_imports_no_torch(tmp_path):
    """`zoo --help` and `zoo parts` import zoo_sigmoid_attention/__init__.py; keep it torch-free."""
    code = "import sys, zoo_sigmoid_attention; assert 'torch' not in sys.modules"
    # run in an empty folder: a folder named zoo where pytest was started must not shadow the package
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
