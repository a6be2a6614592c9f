"""Every file zoo writes has the mode a plain open() would give under the user's umask (0644 under 022,
0600 under 077), directories likewise (0755, 0700): weights included, whose writer (safetensors) makes its
files 0600 whatever the umask. No lock file or temporary file is left behind."""

from __future__ import annotations

import os
import stat

import pytest
from click.testing import CliRunner
from test_training import synthetic, write_jsonl

from zoo import io
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
]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def modes(root):
    """{path relative to root: permission bits} for everything under root."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            out[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return out


def test_the_umask_decides_the_mode_of_every_file_zoo_writes(tmp_path, umask):
    work = tmp_path / "work"
    work.mkdir()
    write_jsonl(work / "train.jsonl", synthetic("cls", 64, 0))
    write_jsonl(work / "dev.jsonl", synthetic("cls", 32, 1))
    invoke("build", *TINY, "-o", work / "m")
    invoke(
        "finetune",
        work / "m",
        "--train",
        work / "train.jsonl",
        "--eval",
        work / "dev.jsonl",
        "-o",
        work / "ft",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--quiet",
    )
    invoke("evaluate", work / "ft", "--data", work / "dev.jsonl", "--report", work / "report")
    invoke("export", work / "ft", "--onnx", "--torchscript", "-o", work / "out")
    invoke("plugin", "new", "zoo-mode-head", "--kind", "head", "-o", work / "plugin")

    found = modes(work)
    for name in (
        "m/model.safetensors",
        "ft/model.safetensors",
        "ft/trainer_state.safetensors",
        "ft/config.json",
        "ft/tokenizer.json",
        "ft/metrics.jsonl",
        "ft/curves.png",
        "report/report.md",
        "report/confusion.png",
        "out/model.onnx",
        "out/model.pt",
        "out/manifest.json",
        "out/tokenizer.json",
        "plugin/pyproject.toml",
    ):
        assert name in found, sorted(found)
    expected = {path: (0o777 if (work / path).is_dir() else 0o666) & ~umask for path in found}
    assert found == expected  # every file and folder, not only those named above
    assert not [p for p in found if os.path.basename(p).startswith(".")]  # no lock or temporary file left


def test_atomic_writes_set_the_mode_after_the_writer(tmp_path, umask):
    """A writer that recreates its file with mode 0600 (as safetensors does) still leaves the umask's mode."""
    target = tmp_path / "weights.bin"
    with io.atomic_path(target) as tmp:
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
