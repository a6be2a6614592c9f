"""zoo-attnpool-head's tests: zoo's conformance kit on the head, TorchScript of the head alone, the command
line, and a torch-free plugin module."""

import json
import subprocess
import sys
import warnings

import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo import testing
from zoo.cli import cli
from zoo.errors import ZooError
from zoo.manager import plugin_infos

HEAD = "zoo-attnpool-head:attnpool"  # 'plugin:name' stays unambiguous even if another plugin has an 'attnpool' too


def test_the_plugin_is_installed_and_registers_its_part():
    info = {i.name: i for i in plugin_infos()}["zoo-attnpool-head"]
    assert info.errors == []
    assert info.parts == {"head": ["attnpool"]}
    assert (info.distribution, info.version) == ("zoo-attnpool-head", "0.1.0")


def test_the_head_passes_the_conformance_kit():
    # On the default encoder (testing.DEFAULT_ENCODER, 'transformer') with the default attention ('sdpa'):
    # shapes, the bool mask zoo passes, the loss as a scalar, backward, padding, determinism, the
    # classification task's metrics, save/load, the head scripted on its own (it declares torchscript='script',
    # so a failure is an error), and ONNX and TorchScript parity of the whole model.
    with warnings.catch_warnings():
        warnings.simplefilter("error", testing.TorchScriptFallback)
        assert testing.check_part("head", HEAD) == [
            "head 'zoo-attnpool-head:attnpool' with encoder 'transformer' and attention 'sdpa'"
        ]


@pytest.mark.parametrize("options", [{}, {"attention_dim": 8}])
def test_with_every_builtin_encoder_and_its_option(options):
    testing.check_part("head", HEAD, options=options, partners=testing.builtin_names("encoder"), export=False)


def test_the_head_scripts_on_its_own():
    model = zoo.build_model(
        "transformer",
        HEAD,
        vocab_size=50,
        d_model=16,
        num_layers=1,
        num_heads=2,
        head_options={"attention_dim": 8},
        seed=0,
    ).eval()
    scripted = torch.jit.script(model.head)
    hidden, mask = torch.randn(2, 5, 16), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    with torch.no_grad():
        torch.testing.assert_close(scripted(hidden, mask), model.head(hidden, mask), atol=0, rtol=0)


def test_export_scripts_the_whole_model(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "build",
            "--head",
            "attnpool",
            "--d-model",
            "16",
            "--num-layers",
            "1",
            "--num-heads",
            "2",
            "-o",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["parts"]["head"] == {
        "name": "attnpool",
        "plugin": "zoo-attnpool-head",
        "options": {"attention_dim": 0},
    }
    result = runner.invoke(cli, ["export", str(tmp_path / "m"), "--torchscript", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "TorchScript: script, parity ok" in result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["torchscript"]["method"] == "script" and "script_error" not in manifest["torchscript"]


def test_a_bad_option_is_one_line():
    with pytest.raises(ZooError, match="attention_dim must be >= 0, got -1"):
        zoo.build_model(
            "transformer",
            HEAD,
            head_options={"attention_dim": -1},
            vocab_size=50,
            d_model=16,
            num_layers=1,
            num_heads=2,
        )


def test_importing_the_plugin_module_imports_no_torch():
    """`zoo --help` and `zoo parts` import zoo_attnpool_head/__init__.py; keep it torch-free."""
    code = "import sys, zoo_attnpool_head; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
