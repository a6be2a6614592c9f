"""Fast start-up (issue 5): `zoo --help`, `zoo parts` and `zoo plugins` import neither torch nor any
part's module. Each command runs in a fresh interpreter, which then reports what it imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from zoo.cli import cli
try:
    cli(sys.argv[1:], prog_name="zoo")
except SystemExit:
    pass
from zoo.manager import get_registry, load_plugins
from zoo.registry import KINDS
load_plugins()  # the entry points --help did not need are loaded now, so their parts are known
lazy = {p.factory.partition(":")[0] for k in KINDS for p in get_registry().parts(k) if isinstance(p.factory, str)}
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "torch" or m in lazy)
print("\\n" + json.dumps(heavy), file=sys.stderr)
"""


def imported_heavy_modules(*args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [["--help"], ["parts"], ["parts", "--json"], ["plugins"], ["plugin", "new", "--help"]],
    ids=" ".join,
)
def test_listing_commands_import_no_torch_and_no_part_module(args):
    assert imported_heavy_modules(*args) == []


def test_the_probe_sees_a_part_module_when_a_model_is_built(tmp_path):
    """The check above could fail: building a model imports torch and the parts' modules."""
    heavy = imported_heavy_modules(
        "build",
        "--attention",
        "mha",
        "--d-model",
        "16",
        "--num-heads",
        "2",
        "--num-layers",
        "1",
        "-o",
        str(tmp_path / "m"),
    )
    assert "torch" in heavy and "zoo.plugins.attention.mha" in heavy
