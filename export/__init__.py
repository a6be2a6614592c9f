"""Export to ONNX and TorchScript with parity checks, and the torch-free runtime that serves an export.

Importing ``zoo.export`` is cheap and torch-free: ``zoo.export.runtime`` must work in an image without
torch, so ``export_model`` (which needs torch) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pipeline import export_model
    from .runtime import OnnxModel


def __getattr__(name: str) -> Any:
    if name == "export_model":
        from .pipeline import export_model

        return export_model
    if name == "OnnxModel":
        from .runtime import OnnxModel

        return OnnxModel
    raise AttributeError(f"module 'zoo.export' has no attribute {name!r}")


__all__ = ["OnnxModel", "export_model"]
