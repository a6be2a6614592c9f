"""``zoo parts`` and ``zoo plugins``: what is registered, and by whom. Neither imports torch."""

from __future__ import annotations

import json

import click

from zoo.registry import KINDS

from .options import Choice


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {kind: [part, ...]} with metadata.")
@click.option("--kind", type=Choice(KINDS), help="Only this kind.")
def parts(as_json: bool, kind: str | None) -> None:
    """List the registered parts: kind, name, other names, plugin, description."""
    from zoo.manager import get_registry

    data = get_registry().as_dict()
    if kind:
        data = {kind: data[kind]}
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    rows: list[tuple[str, ...]] = [
        (k, p["name"], ", ".join(p["aliases"]) or "-", p["plugin"], p["description"])
        for k, items in data.items()
        for p in items
    ]
    _table(("KIND", "NAME", "ALIASES", "PLUGIN", "DESCRIPTION"), rows)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List loaded plugins: distribution, version, hooks, parts and load errors."""
    from zoo.manager import plugin_infos

    infos = plugin_infos()
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    rows: list[tuple[str, ...]] = []
    for i in infos:
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in i.parts.items())
        rows.append(
            (
                i.name,
                f"{i.distribution or '-'} {i.version or ''}".strip(),
                ", ".join(i.hooks) or "-",
                registered or "-",
                " | ".join(i.errors) or "ok",
            )
        )
    _table(("PLUGIN", "DISTRIBUTION", "HOOKS", "PARTS", "STATUS"), rows)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths)] + [str(row[-1])]
        click.echo("  ".join(cells).rstrip())
