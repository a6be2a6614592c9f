"""Checks of export arguments that need neither torch nor the model, so `zoo export` fails on a bad flag
combination before it loads anything."""

from __future__ import annotations

from collections.abc import Mapping

from zoo.errors import ZooError

# How a message names each argument: Python callers of export_model read its keywords, `zoo export` its flags.
PYTHON_NAMES: Mapping[str, str] = {
    "onnx": "onnx=True",
    "torchscript": "torchscript=True",
    "optimize": "optimize=True",
    "quantize": "quantize=",
    "opset": "opset",
    "allow_mismatch": "allow_mismatch=True",
    "min_agreement": "min_agreement",
    "calibration": "calibration_texts",
}
CLI_NAMES: Mapping[str, str] = {
    "onnx": "--onnx",
    "torchscript": "--torchscript",
    "optimize": "--optimize",
    "quantize": "--quantize",
    "opset": "--opset",
    "allow_mismatch": "--allow-mismatch",
    "min_agreement": "--min-agreement",
    "calibration": "--calibration-data",
}


def check_formats(
    onnx: bool,
    torchscript: bool,
    optimize: bool,
    quantize: str | None,
    names: Mapping[str, str] = PYTHON_NAMES,
) -> None:
    if not onnx and (optimize or quantize):
        raise ZooError(
            f"{names['optimize']} and {names['quantize']} work on the ONNX graph; add {names['onnx']}"
        )
    if not torchscript and not onnx:
        raise ZooError(f"nothing to export: pass {names['onnx']} and/or {names['torchscript']}")
