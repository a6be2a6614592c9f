"""Shared fixtures: inline plugins registered for one test and always unregistered."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# pytest-xdist runs one worker per core: one thread each (subprocesses inherit it) avoids oversubscription,
# where OpenMP's busy-waiting threads make tiny models hundreds of times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def inline_plugin():
    """register(obj, name) -> name; every plugin registered this way is unregistered afterwards."""
    from zoo.manager import get_registry, pm

    names: list[str] = []

    def register(obj, name: str) -> str:
        pm.register(obj, name=name)
        names.append(name)
        return name

    get_registry()  # load the built-ins first so the inline plugin is an addition
    try:
        yield register
    finally:
        for name in names:
            if pm.get_plugin(name) is not None:
                pm.unregister(name=name)
