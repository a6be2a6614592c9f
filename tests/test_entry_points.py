"""Third-party plugins through real entry points: packages built and installed (into a private --target
directory, visible only to the subprocesses that put it on PYTHONPATH) inside the test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GOOD = """
from zoo import hookimpl

@hookimpl
def register_heads(register):
    register("ep-head", "zoo.plugins.heads.classification:ClassificationHead",
             description="cls head re-registered by a third party", capabilities={"labels": "class"})
"""
BROKEN = "raise ImportError('this plugin is broken on purpose')\n"


def make_package(root: Path, dist: str, module: str, source: str) -> Path:
    pkg = root / dist
    (pkg / module).mkdir(parents=True)
    (pkg / module / "__init__.py").write_text(source)
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "1.2.3"
        [project.entry-points.zoo]
        {module} = "{module}"
        [tool.setuptools]
        packages = ["{module}"]
    """)
    )
    return pkg


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugins")
    target = root / "site"
    for dist, module, source in [("zoo-good", "goodplug", GOOD), ("zoo-broken", "brokenplug", BROKEN)]:
        pkg = make_package(root, dist, module, source)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--target",
                str(target),
                str(pkg),
            ],
            check=True,
            capture_output=True,
        )
    return target


def zoo_cli(site: Path, *args: str, allow: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("ZOO_LOAD_PLUGINS", None)
    if allow is not None:
        env["ZOO_LOAD_PLUGINS"] = allow
    return subprocess.run([sys.executable, "-m", "zoo", *args], env=env, capture_output=True, text=True)


def test_entry_point_plugin_loads_and_is_listed(site):
    result = zoo_cli(site, "parts", "--json")
    assert result.returncode == 0, result.stderr
    heads = {p["name"]: p for p in json.loads(result.stdout)["head"]}
    assert heads["ep-head"]["plugin"] == "goodplug"
    plugins = {p["name"]: p for p in json.loads(zoo_cli(site, "plugins", "--json").stdout)}
    assert plugins["goodplug"]["distribution"] == "zoo-good"
    assert plugins["goodplug"]["version"] == "1.2.3"
    assert plugins["goodplug"]["hooks"] == ["register_heads"]
    assert plugins["goodplug"]["parts"] == {"head": ["ep-head"]}


def test_broken_plugin_is_reported_and_everything_else_works(site, tmp_path):
    result = zoo_cli(
        site,
        "build",
        "--head",
        "ep-head",
        "--d-model",
        "16",
        "--num-heads",
        "2",
        "--num-layers",
        "1",
        "--vocab-size",
        "30",
        "--output",
        str(tmp_path / "m"),
    )
    assert result.returncode == 0, result.stderr
    assert (
        "plugin 'brokenplug' failed to load: ImportError: this plugin is broken on purpose" in result.stderr
    )
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["parts"]["head"] == {
        "name": "ep-head",
        "plugin": "goodplug",
        "options": {"pooling": "cls", "pooler": False, "pooler_activation": "tanh", "pooler_norm": False},
    }
    plugins = {p["name"]: p for p in json.loads(zoo_cli(site, "plugins", "--json").stdout)}
    assert plugins["brokenplug"]["errors"] == [
        "failed to import brokenplug: ImportError: this plugin is broken on purpose"
    ]


@pytest.mark.parametrize(
    "allow, expected", [("", set()), ("goodplug", {"goodplug"}), ("other, brokenplug", {"brokenplug"})]
)
def test_allow_list(site, allow, expected):
    result = zoo_cli(site, "plugins", "--json", allow=allow)
    assert result.returncode == 0, result.stderr
    third_party = {p["name"] for p in json.loads(result.stdout) if not p["builtin"]}
    assert third_party == expected
    assert ("ep-head" in zoo_cli(site, "parts", allow=allow).stdout) == ("goodplug" in expected)


def test_model_from_a_missing_plugin_names_it(site, tmp_path):
    assert (
        zoo_cli(
            site,
            "build",
            "--head",
            "ep-head",
            "--d-model",
            "16",
            "--num-heads",
            "2",
            "--num-layers",
            "1",
            "--vocab-size",
            "30",
            "--output",
            str(tmp_path / "m"),
        ).returncode
        == 0
    )
    script = f"import zoo; zoo.load_model({str(tmp_path / 'm')!r})"
    env = {**os.environ, "PYTHONPATH": str(site), "ZOO_LOAD_PLUGINS": ""}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "needs head 'ep-head' from plugin 'goodplug', which is not installed" in result.stderr
