"""zoo: assemble transformer encoders from named parts, fine-tune them, ship them through ONNX.

Importing zoo is cheap: torch is imported on first use of the model API, not here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .constants import VERSION as __version__
from .errors import ZooError
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .model import ZooModel


def build_model(
    arch: str = "transformer", head: str = "cls", attention: str | None = None, **options: Any
) -> ZooModel:
    """Assemble a ZooModel from registered parts (see zoo.model.build_model)."""
    from .model import build_model as _build

    return _build(arch, head, attention, **options)


def load_model(path: str | os.PathLike[str]) -> ZooModel:
    """Load a model directory written by ``model.save`` or ``zoo build``."""
    from .model import load_model as _load

    return _load(path)


def list_parts() -> dict[str, list[str]]:
    """{"attention": [...], "encoder": [...], "head": [...]}: the names registered now."""
    from .manager import get_registry
    from .registry import KINDS

    registry = get_registry()
    return {kind: registry.names(kind) for kind in KINDS}


def __getattr__(name: str) -> Any:
    if name == "ZooModel":
        from .model import ZooModel

        return ZooModel
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


__all__ = ["ZooError", "ZooModel", "__version__", "build_model", "hookimpl", "list_parts", "load_model"]
