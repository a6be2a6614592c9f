"""``zoo plugin new``: write a ready-to-install plugin package (templates in zoo/scaffold_templates.py)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from zoo.errors import ZooError
from zoo.io import staged_directory

from .options import Choice

KINDS = ("attention", "encoder", "head", "task")  # a task package holds a head that serves it too
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def derive_names(name: str, kind: str, part: str | None) -> dict[str, str]:
    """Module, part and class names from a distribution name such as 'zoo-sigmoid-attention'."""
    if not NAME_PATTERN.fullmatch(name):
        raise ZooError(
            f"plugin name '{name}' must be lowercase letters and digits in hyphen-separated words, "
            "starting with a letter (e.g. zoo-sigmoid-attention)"
        )
    module = name.replace("-", "_")
    if module in ("zoo", "torch", "tests", "test"):
        raise ZooError(f"plugin name '{name}' would make a module named '{module}'; choose another name")
    if part is None:
        part = name.removeprefix("zoo-").removesuffix(f"-{kind}") or name
    if not part or ":" in part or part != part.strip():
        raise ZooError(f"part name '{part}' must be non-empty, without ':' or surrounding spaces")
    from zoo.scaffold_templates import CLASS_SUFFIX

    class_name = (
        "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", part) if w) + CLASS_SUFFIX[kind]
    )
    if not class_name.isidentifier():
        class_name = "My" + class_name
    return {"name": name, "module": module, "part": part, "class_name": class_name, "kind": kind}


def write_package(name: str, kind: str, output: str | Path | None = None, part: str | None = None) -> Path:
    """Render the package into a hidden sibling directory, then rename it into place (all or nothing)."""
    from zoo.scaffold_templates import render

    values = derive_names(name, kind, part)
    target = Path(output) if output is not None else Path(name)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise ZooError(f"{target} already exists and is not empty; choose another --output")
    with staged_directory(target, suffix="") as staging:
        for relative, text in render(**values).items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return target


@click.group()
def plugin() -> None:
    """Create plugin packages (see docs/plugins.md)."""


@plugin.command("new")
@click.argument("name")
@click.option("--kind", required=True, type=Choice(KINDS), help="The kind of part the plugin adds.")
@click.option(
    "--part", "part", default=None, help="The part's name [default: NAME without 'zoo-' and '-KIND']."
)
@click.option(
    "--output", "-o", type=click.Path(), default=None, help="Directory to create [default: ./NAME]."
)
def new(name: str, kind: str, part: str | None, output: str | None) -> None:
    """Write a plugin package NAME (e.g. zoo-sigmoid-attention) with a working example part and tests."""
    target = write_package(name, kind, output, part)
    values = derive_names(name, kind, part)
    click.echo(f"wrote {target}: {kind} '{values['part']}' in plugin '{name}'")
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        click.echo(f"  {path.relative_to(target)}")
    for clash_kind in ("task", "head") if kind == "task" else (kind,):
        _note_clash(clash_kind, values["part"], name)
    click.echo("next:")
    click.echo(f"  pip install -e {target}")
    click.echo(f"  pytest {target}")
    click.echo(f"  zoo parts --kind {kind}")


def _note_clash(kind: str, part: str, plugin_name: str) -> None:
    """Tell the author now if users will need 'plugin:name' for this part."""
    from zoo.manager import get_registry

    owners = sorted(
        {p.plugin for p in get_registry().parts(kind) if part in (p.name, *p.aliases)} - {plugin_name}
    )
    if owners:
        click.echo(
            f"note: {kind} '{part}' is also registered by {', '.join(owners)}; users will pick yours "
            f"with '{plugin_name}:{part}'"
        )
