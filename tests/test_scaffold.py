"""`zoo plugin new`: the files it writes, its errors, and the scaffold -> pip install -e -> pytest round trip.

The round trip installs into a private --target directory that only the test's subprocess sees (through
PYTHONPATH), so the scaffolded entry point never leaks into other tests running at the same time.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.cli.scaffold import derive_names

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_new_attention_package_has_every_file(tmp_path):
    out = tmp_path / "pkg"
    result = run("plugin", "new", "zoo-sigmoid-attention", "--kind", "attention", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert (
        result.output.splitlines()[0] == f"wrote {out}: attention 'sigmoid' in plugin 'zoo-sigmoid-attention'"
    )
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "tests/test_zoo_sigmoid_attention.py",
        "zoo_sigmoid_attention/__init__.py",
        "zoo_sigmoid_attention/attention.py",
    ]
    project = tomllib.loads((out / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["zoo"] == {"zoo-sigmoid-attention": "zoo_sigmoid_attention"}
    assert project["tool"]["setuptools"]["packages"] == ["zoo_sigmoid_attention"]
    init = (out / "zoo_sigmoid_attention/__init__.py").read_text()
    assert 'register("sigmoid", "zoo_sigmoid_attention.attention:SigmoidAttention"' in init  # a lazy path
    assert "torch" not in init.replace("imports no torch", "")
    for path in out.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    assert (
        'testing.check_part("attention", PART)' in (out / "tests/test_zoo_sigmoid_attention.py").read_text()
    )
    assert "zoo build --arch transformer --attention sigmoid" in (out / "README.md").read_text()


def test_new_task_package_has_a_task_and_a_head_that_serves_it(tmp_path):
    out = tmp_path / "pkg"
    result = run("plugin", "new", "zoo-stars-task", "--kind", "task", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"wrote {out}: task 'stars' in plugin 'zoo-stars-task'"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "tests/test_zoo_stars_task.py",
        "zoo_stars_task/__init__.py",
        "zoo_stars_task/head.py",
        "zoo_stars_task/task.py",
    ]
    init = (out / "zoo_stars_task/__init__.py").read_text()
    assert 'register("stars", "zoo_stars_task.task:StarsTask"' in init  # lazy paths, both parts
    assert 'register("stars", "zoo_stars_task.head:StarsHead", task="stars"' in init
    assert "torch" not in init.replace("imports no torch", "")
    assert "import torch" not in (out / "zoo_stars_task/task.py").read_text().split("class StarsTask")[0]
    for path in out.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    test = (out / "tests/test_zoo_stars_task.py").read_text()
    assert 'testing.check_part("task", PART)' in test
    assert 'info.parts == {"task": ["stars"], "head": ["stars"]}' in test
    assert "zoo build --arch transformer --head stars" in (out / "README.md").read_text()


@pytest.mark.parametrize(
    "name, kind, part, expected",
    [
        (
            "zoo-sigmoid-attention",
            "attention",
            None,
            ("zoo_sigmoid_attention", "sigmoid", "SigmoidAttention"),
        ),
        (
            "zoo-deep-narrow-encoder",
            "encoder",
            None,
            ("zoo_deep_narrow_encoder", "deep-narrow", "DeepNarrowEncoder"),
        ),
        ("maxpool", "head", None, ("maxpool", "maxpool", "MaxpoolHead")),
        ("zoo-head", "head", None, ("zoo_head", "head", "HeadHead")),
        ("zoo-x2", "attention", "2d", ("zoo_x2", "2d", "My2dAttention")),
        ("zoo-stars-task", "task", None, ("zoo_stars_task", "stars", "StarsTask")),
    ],
)
def test_names_derived_from_the_distribution_name(name, kind, part, expected):
    names = derive_names(name, kind, part)
    assert (names["module"], names["part"], names["class_name"]) == expected


def test_the_generated_parts_pass_the_kit_in_process(tmp_path, inline_plugin):
    """Every template, registered inline: together in one model, and each through the conformance kit
    without export (the round trip below runs the generated tests, export included)."""
    import importlib

    import torch

    from zoo import testing

    kinds = ("attention", "encoder", "head", "task")
    for (
        kind
    ) in kinds:  # the task package's task and head are 'tt' (its head would clash with zoo-t-head's 't')
        out = tmp_path / kind
        part = ["--part", "tt"] if kind == "task" else []
        assert run("plugin", "new", f"zoo-t-{kind}", "--kind", kind, *part, "-o", str(out)).exit_code == 0
    sys.path[:0] = [str(tmp_path / k) for k in kinds]
    try:
        for kind in kinds:
            inline_plugin(importlib.import_module(f"zoo_t_{kind}"), name=f"zoo-t-{kind}")
        import zoo

        model = zoo.build_model(
            "t",
            head="t",
            attention="t",
            vocab_size=50,
            d_model=16,
            num_layers=1,
            num_heads=2,
            num_labels=3,
            seed=0,
        )
        logits = model(torch.randint(1, 50, (2, 5)), torch.tensor([[1] * 5, [1, 1, 1, 0, 0]]))
        assert logits.shape == (2, 3)
        assert {model.spec.attention.plugin, model.spec.encoder.plugin, model.spec.head.plugin} == {
            "zoo-t-attention",
            "zoo-t-encoder",
            "zoo-t-head",
        }
        for kind in ("attention", "encoder", "head"):
            assert testing.check_part(kind, f"zoo-t-{kind}:t", export=False)
        assert testing.check_part("task", "zoo-t-task:tt", export=False) == [
            "task 'tt' with encoder 'transformer' and attention 'sdpa' and head 'tt'"
        ]
        task_model = zoo.build_model(
            "t",
            head="tt",
            attention="t",
            vocab_size=50,
            d_model=16,
            num_layers=1,
            num_heads=2,
            labels=["no", "yes"],
            seed=0,
        )
        assert (task_model.spec.task.ref, task_model.spec.head.plugin) == ("zoo-t-task:tt", "zoo-t-task")
    finally:
        del sys.path[: len(kinds)]
        for kind in kinds:
            for module in [m for m in sys.modules if m == f"zoo_t_{kind}" or m.startswith(f"zoo_t_{kind}.")]:
                del sys.modules[module]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["Bad_Name", "--kind", "head"],
            "error: plugin name 'Bad_Name' must be lowercase letters and digits in "
            "hyphen-separated words, starting with a letter (e.g. zoo-sigmoid-attention)",
        ),
        (
            ["zoo", "--kind", "head"],
            "error: plugin name 'zoo' would make a module named 'zoo'; choose another name",
        ),
        (
            ["zoo-x", "--kind", "head", "--part", "a:b"],
            "error: part name 'a:b' must be non-empty, without ':' or surrounding spaces",
        ),
    ],
)
def test_bad_names_are_one_line_errors(args, message, tmp_path):
    result = run("plugin", "new", *args, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.output.strip() == message
    assert not (tmp_path / "out").exists()


def test_existing_directory_is_not_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = run("plugin", "new", "zoo-a-head", "--kind", "head", "-o", str(tmp_path / "taken"))
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: {tmp_path / 'taken'} already exists and is not empty; choose another --output"
    )
    assert os.listdir(tmp_path / "taken") == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert run("plugin", "new", "zoo-a-head", "--kind", "head", "-o", str(tmp_path / "empty")).exit_code == 0
    assert (tmp_path / "empty" / "zoo_a_head" / "head.py").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging directory left behind


def test_unknown_kind_and_a_clash_note(tmp_path):
    result = run("plugin", "new", "zoo-x", "--kind", "atention", "-o", str(tmp_path / "x"))
    assert (
        result.exit_code == 2
        and "'atention' is not one of 'attention', 'encoder', 'head', 'task'" in result.output
    )
    result = run("plugin", "new", "zoo-local-attention", "--kind", "attention", "-o", str(tmp_path / "local"))
    assert result.exit_code == 0
    assert (
        "note: attention 'local' is also registered by zoo.attention; users will pick yours with "
        "'zoo-local-attention:local'"
    ) in result.output


@pytest.mark.slow
# An encoder's kit run exports 6 models (~1 min). A task package holds a head from the head template, so "task"
# also installs and exports that template; the head package itself is checked in process above.
@pytest.mark.parametrize("kind", ["attention", "task"])
def test_scaffold_install_and_its_tests_pass(kind, tmp_path):
    name = f"zoo-fresh-{kind}"
    package, site = tmp_path / name, tmp_path / "site"
    assert run("plugin", "new", name, "--kind", kind, "-o", str(package)).exit_code == 0
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
            str(site),
            "-e",
            str(package),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # An editable install into --target leaves a .pth that only site dirs honour; the source directory on
    # PYTHONPATH stands in for it, and the dist-info in `site` provides the entry point.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(package)])
    # run as the README says, from the folder above, which also holds a clone of zoo: a folder named zoo
    # that would shadow the installed package for anything that puts the current folder on sys.path
    (tmp_path / "zoo" / "zoo").mkdir(parents=True)
    pytest_script = os.path.join(os.path.dirname(sys.executable), "pytest")
    result = subprocess.run(
        [pytest_script, "-q", "-p", "no:cacheprovider", name],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3 passed" in result.stdout


def test_zoo_plugins_reports_versions_hooks_parts_and_errors(inline_plugin):
    """`zoo plugins --json` for the built-ins (zoo's own version) and an inline plugin with a failing hook."""
    import json

    from zoo import __version__, hookimpl

    class HalfBroken:
        @hookimpl
        def register_attention(self, register):
            register("half", "zoo.plugins.attention.sdpa:SDPAttention")

        @hookimpl
        def register_heads(self, register):
            raise RuntimeError("head table missing")

    inline_plugin(HalfBroken(), name="half-broken")
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert "zoo: warning: plugin 'half-broken' failed in register_heads" in result.output
    stdout = (
        result.stdout[result.stdout.index("\n[") :] if not result.stdout.startswith("[") else result.stdout
    )
    data = {p["name"]: p for p in json.loads(stdout)}  # (click < 8.2 mixes the stderr warning into stdout)
    assert data["zoo.attention"]["distribution"] == "zoo" and data["zoo.attention"]["version"] == __version__
    assert data["half-broken"]["hooks"] == ["register_attention", "register_heads"]
    assert data["half-broken"]["parts"] == {"attention": ["half"]}
    assert data["half-broken"]["errors"] == ["register_heads raised RuntimeError: head table missing"]
