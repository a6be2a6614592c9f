"""Checks of export arguments that need neither torch nor the model, so `zoo export` fails on a bad flag
combination before it loads anything."""
from __future__ import annotations

from zoo.errors import ZooError


def check_formats(onnx: bool, torchscript: bool, optimize: bool, quantize: str | None) -> None:
    if not onnx and (optimize or quantize):
        raise ZooError("--optimize and --quantize work on the ONNX graph; add --onnx")
    if not torchscript and not onnx:
        raise ZooError("nothing to export: pass --onnx and/or --torchscript")
