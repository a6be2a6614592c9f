"""The plugin manager: built-in plugins, entry points in the ``zoo`` group, and isolation of failures.

Built-in parts are plugins too (llm's DEFAULT_PLUGINS): they go through the same hooks, so they work
from a source checkout and follow the same rules as any third-party package.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .registry import HOOKS, KINDS, Registry, make_part

# pluggy plugin name -> module; the names are what config.json and 'plugin:name' refer to.
DEFAULT_PLUGINS = {
    "zoo.attention": "zoo.plugins.attention",
    "zoo.encoders": "zoo.plugins.encoders",
    "zoo.heads": "zoo.plugins.heads",
    "zoo.tasks": "zoo.plugins.tasks",
    "zoo.adapters": "zoo.plugins.adapters",
}


@dataclass
class PluginInfo:
    name: str
    module: str
    builtin: bool
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    parts: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    import_errors: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "import_errors"}


pm = pluggy.PluginManager("zoo")
pm.add_hookspecs(hookspecs)
_infos: dict[str, PluginInfo] = {}
_loaded = False
_registry_cache: tuple[frozenset, Registry] | None = None


def _warn(message: str) -> None:
    print(f"zoo: warning: {message}", file=sys.stderr)


def _trace(message: str) -> None:
    if os.environ.get("ZOO_TRACE_PLUGINS"):
        print(f"zoo: trace: {message}", file=sys.stderr)


def _zoo_version() -> str:
    from .constants import VERSION

    return VERSION


def allowed_plugins() -> set[str] | None:
    """The ZOO_LOAD_PLUGINS allow-list of third-party plugins; None means load all."""
    raw = os.environ.get("ZOO_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_plugins() -> None:
    """Register the built-ins and the allowed entry points once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name, module_name in DEFAULT_PLUGINS.items():
        if pm.get_plugin(name) is None:
            pm.register(importlib.import_module(module_name), name=name)
        _infos[name] = PluginInfo(name, module_name, builtin=True, distribution="zoo", version=_zoo_version())
    allow = allowed_plugins()
    for ep in metadata.entry_points(group="zoo"):
        if allow is not None and ep.name not in allow:
            continue
        info = PluginInfo(ep.name, ep.value, builtin=False)
        if ep.dist is not None:
            info.distribution, info.version = ep.dist.metadata["Name"], ep.dist.version
        _infos[ep.name] = info
        if pm.get_plugin(ep.name) is not None or ep.name in DEFAULT_PLUGINS:
            info.import_errors.append(f"plugin name '{ep.name}' is already taken; skipped")
            _warn(f"plugin '{ep.name}' ({ep.value}) skipped: the name is already taken")
            continue
        start = time.perf_counter()
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:
            info.import_errors.append(f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
            _warn(f"plugin '{ep.name}' failed to load: {type(exc).__name__}: {exc}")
        _trace(f"loaded plugin '{ep.name}' in {1000 * (time.perf_counter() - start):.1f} ms")


def _build_registry() -> Registry:
    registry = Registry()
    for info in _infos.values():
        info.hooks, info.parts, info.errors = [], {}, list(info.import_errors)
    for kind in KINDS:
        hook_name = HOOKS[kind]
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin_name = impl.plugin_name
            info = _infos.setdefault(
                plugin_name,
                PluginInfo(plugin_name, getattr(impl.plugin, "__name__", repr(impl.plugin)), False),
            )
            info.hooks.append(hook_name)

            def register(name: str, factory: Any, _kind=kind, _plugin=plugin_name, **meta: Any) -> None:
                registry.add(make_part(_kind, _plugin, name, factory, **meta))
                _infos[_plugin].parts.setdefault(_kind, []).append(name)

            start = time.perf_counter()
            try:
                impl.function(**dict.fromkeys(impl.argnames, register))
            except Exception as exc:
                info.errors.append(f"{hook_name} raised {type(exc).__name__}: {exc}")
                _warn(f"plugin '{plugin_name}' failed in {hook_name}: {type(exc).__name__}: {exc}")
            _trace(f"{plugin_name}.{hook_name} took {1000 * (time.perf_counter() - start):.1f} ms")
    for kind in KINDS:
        for name, plugins in registry.clashes(kind).items():
            _warn(
                f"{kind} '{name}' is registered by {' and '.join(plugins)}; use 'plugin:{name}' to pick one"
            )
    return registry


def get_registry() -> Registry:
    """The registry for the plugins registered now; rebuilt when plugins are (un)registered."""
    global _registry_cache
    load_plugins()
    key = frozenset((name, id(plugin)) for name, plugin in pm.list_name_plugin())
    if _registry_cache is None or _registry_cache[0] != key:
        _registry_cache = (key, _build_registry())
    return _registry_cache[1]


def plugin_infos() -> list[PluginInfo]:
    get_registry()
    live = {name for name, _ in pm.list_name_plugin()}
    return [info for name, info in _infos.items() if name in live or info.errors]


def reset() -> None:
    """Forget loaded entry points (tests use it after changing ZOO_LOAD_PLUGINS)."""
    global _loaded, _registry_cache
    for name, _ in list(pm.list_name_plugin()):
        if name not in DEFAULT_PLUGINS:
            pm.unregister(name=name)
    _infos.clear()
    _loaded, _registry_cache = False, None
