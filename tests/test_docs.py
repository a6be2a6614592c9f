"""Meta-tests for docs/plugins.md (datasette style): every hook is documented with its exact signature,
every hook has a test, and every ```python block in the page runs as a script."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"
TESTS = Path(__file__).resolve().parent


def hook_signatures() -> dict[str, str]:
    """{'register_attention': 'register_attention(register)', ...} from zoo/hookspecs.py itself (the parameter
    names: their types are zoo.types' Protocols)."""
    return {
        name: f"{name}({', '.join(inspect.signature(fn).parameters)})"
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "zoo_spec")
    }


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_hookspecs_are_found():
    assert {"register_attention", "register_encoders", "register_heads"} <= set(hook_signatures())


@pytest.mark.parametrize("hook", sorted(hook_signatures()))
def test_every_hook_is_documented_with_its_exact_signature(hook):
    signature = hook_signatures()[hook]
    assert f"### `{signature}`" in DOC.read_text(encoding="utf-8"), (
        f"docs/plugins.md needs a '### `{signature}`' section"
    )


@pytest.mark.parametrize("hook", sorted(hook_signatures()))
def test_every_hook_has_a_runnable_example(hook):
    assert any(re.search(rf"^def {hook}\(", block, flags=re.M) for block in python_blocks()), (
        f"docs/plugins.md has no ```python example implementing {hook}"
    )


@pytest.mark.parametrize("hook", sorted(hook_signatures()))
def test_every_hook_has_a_test(hook):
    """Some test module (other than this one) implements the hook in an inline plugin."""
    pattern = re.compile(rf"def {hook}\(")
    users = [
        p.name
        for p in TESTS.glob("test_*.py")
        if p.name != Path(__file__).name and pattern.search(p.read_text())
    ]
    assert users, f"no test implements {hook}; register an inline plugin that implements it"


def test_the_doc_has_one_example_per_hook_and_the_kit():
    blocks = python_blocks()
    assert len(blocks) >= len(hook_signatures()) + 1
    assert any("zoo.testing" in b or "from zoo import testing" in b for b in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_blocks_run_as_scripts(index, tmp_path):
    """Each block is saved to a file and run with `python file.py`, as a reader would."""
    script = tmp_path / f"example_{index}.py"
    script.write_text(python_blocks()[index], encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"block {index} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
