"""The wheel claims only the `zoo` package (plugins/ and export/ install as zoo.plugins and zoo.export)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_layout_and_import(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("zoo-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"zoo"}
    for module in (
        "zoo/plugins/attention/sdpa.py",
        "zoo/plugins/encoders/bert.py",
        "zoo/plugins/heads/token.py",
        "zoo/plugins/tasks/token.py",
        "zoo/plugins/encoders/bert_import.py",
        "zoo/export/__init__.py",
        "zoo/cli/__init__.py",
        "zoo/hookspecs.py",
        "zoo/types.py",
        "zoo/py.typed",  # PEP 561: type checkers read zoo's hints (tests/test_typing.py)
    ):
        assert module in names
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(tmp_path / "site"),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    script = (
        "import zoo, zoo.plugins.attention.sdpa, zoo.export; "
        "assert zoo.__file__.startswith({!r}), zoo.__file__; "
        "m = zoo.build_model(d_model=16, num_heads=2, num_layers=1, vocab_size=20); print(sorted(zoo.list_parts()['encoder']))".format(
            str(tmp_path / "site")
        )
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['bert', 'deberta', 'modernbert', 'prenorm', 'transformer']"


@pytest.mark.slow
def test_the_layer_contracts_hold(tmp_path):
    """lint-imports (import-linter, contracts in pyproject.toml) on the installed package, where zoo.plugins
    and zoo.export sit inside zoo as users get them: `.ci/check imports`, as CI runs it, into a private site."""
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "check"), "imports"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "ZOO_CHECK_SITE": str(tmp_path / "site"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
