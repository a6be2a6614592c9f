"""The parts registry: what each plugin registered, name resolution, clashes and suggestions."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ZooError, did_you_mean, unknown

# The kinds of part, each with the hook that registers it: the one list every other module reads.
HOOKS = {
    "attention": "register_attention",
    "encoder": "register_encoders",
    "head": "register_heads",
    "task": "register_tasks",
    "importer": "register_importers",
    "adapter": "register_adapters",
}
KINDS = tuple(HOOKS)
MODEL_PARTS = ("encoder", "attention", "head", "task")  # what config.json records for a model
DEFAULT_CAPABILITIES = {"onnx": True, "torchscript": True}
METADATA = ("description", "aliases", "capabilities", "task")


@dataclass(frozen=True)
class Part:
    kind: str
    name: str
    plugin: str
    factory: Callable[..., Any] | str  # a callable, or a lazy "module:attr" import path
    description: str = ""
    aliases: tuple[str, ...] = ()
    capabilities: dict[str, Any] = field(default_factory=dict)
    task: str | None = None  # heads: the task they serve

    @property
    def ref(self) -> str:
        return f"{self.plugin}:{self.name}"

    def load(self) -> Callable[..., Any]:
        """The factory itself, importing it first when it was registered as a path."""
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except Exception as exc:  # a broken plugin must not look like a zoo bug
            raise ZooError(
                f"{self.kind} '{self.name}' from plugin '{self.plugin}' failed to load "
                f"from {self.factory}: {type(exc).__name__}: {exc}"
            ) from exc

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "aliases": list(self.aliases),
            "capabilities": dict(self.capabilities),
            **({"task": self.task} if self.task else {}),
        }


class Registry:
    def __init__(self) -> None:
        self._parts: dict[str, list[Part]] = {kind: [] for kind in KINDS}

    def add(self, part: Part) -> None:
        if part.kind not in KINDS:
            raise ValueError(f"unknown part kind {part.kind!r}")
        if not isinstance(part.name, str) or not part.name or ":" in part.name:
            raise ValueError(f"invalid {part.kind} name {part.name!r} (non-empty, no ':')")
        if not (callable(part.factory) or (isinstance(part.factory, str) and ":" in part.factory)):
            raise ValueError(f"{part.kind} '{part.name}': factory must be callable or 'module:attr'")
        if any(p.plugin == part.plugin and part.name in (p.name, *p.aliases) for p in self._parts[part.kind]):
            raise ValueError(f"{part.kind} '{part.name}' registered twice by the same plugin")
        self._parts[part.kind].append(part)

    def parts(self, kind: str) -> list[Part]:
        return sorted(self._parts[kind], key=lambda p: (p.name, p.plugin))

    def names(self, kind: str) -> list[str]:
        return sorted({p.name for p in self._parts[kind]})

    def clashes(self, kind: str) -> dict[str, list[str]]:
        """Names (or aliases) that more than one plugin claims, with the claiming plugins."""
        owners: dict[str, set[str]] = {}
        for p in self._parts[kind]:
            for n in (p.name, *p.aliases):
                owners.setdefault(n, set()).add(p.plugin)
        return {n: sorted(ps) for n, ps in owners.items() if len(ps) > 1}

    def resolve(self, kind: str, ref: str) -> Part:
        """Find a part by 'name', an alias, or 'plugin:name'. Clashes and typos are errors."""
        plugin, _, name = ref.rpartition(":")
        matches = [p for p in self._parts[kind] if name in (p.name, *p.aliases)]
        if plugin:
            picked = [p for p in matches if p.plugin == plugin]
            if not picked:
                raise unknown(kind, ref, [p.ref for p in self._parts[kind]])
            matches = picked
        if not matches:
            raise unknown(kind, name, self.names(kind))
        if len(matches) > 1:
            refs = " or ".join(f"'{p.ref}'" for p in matches)
            plugins = " and ".join(f"'{p.plugin}'" for p in matches)
            raise ZooError(f"{kind} '{name}' is registered by both {plugins}; pick one with {refs}")
        return matches[0]

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {kind: [p.describe() for p in self.parts(kind)] for kind in KINDS}


def make_part(
    kind: str,
    plugin: str,
    name: str,
    factory: Any,
    *,
    description: str = "",
    aliases: tuple[str, ...] | list[str] = (),
    capabilities: dict[str, Any] | None = None,
    task: str | None = None,
    **unknown_metadata: Any,
) -> Part:
    if unknown_metadata:
        bad = next(iter(unknown_metadata))
        raise TypeError(f"unknown metadata '{bad}'{did_you_mean(bad, METADATA)}")
    if task is not None and (kind != "head" or not isinstance(task, str) or not task):
        raise TypeError(
            "metadata 'task' names the task a head serves (a non-empty string); only heads take it"
        )
    caps = {**DEFAULT_CAPABILITIES, **(capabilities or {})}
    return Part(kind, name, plugin, factory, description, tuple(aliases), caps, task)
