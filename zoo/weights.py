"""Safetensors weights files: the header (names, shapes, dtypes) read without the data, the one strict check of
names, shapes and dtypes against a model, and strict loading. Nothing is ever unpickled."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import ZooError


def read_header(file: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, dtype)} from a safetensors header, without reading the data."""
    from safetensors import SafetensorError, safe_open

    if not file.is_file():
        raise ZooError(f"{file}: missing weights file")
    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ZooError(f"{file}: not a valid safetensors file ({exc})") from None


_SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
    torch.uint8: "U8",
}


def check_tensors(
    expected: dict[str, Tensor],
    header: Mapping[str, tuple[tuple[int, ...], str | None]],
    file: Path | str,
    context: str = "",
) -> None:
    """Names, shapes and dtypes (None in ``header``: any) must match exactly; the message names the file, the
    first bad tensor and ``context``. The one check for model directories, training checkpoints and imports."""
    then = f"; {context}" if context else ""
    missing = sorted(expected.keys() - header.keys())
    unexpected = sorted(header.keys() - expected.keys())
    for problem, names in (("missing", missing), ("unexpected", unexpected)):
        if names:
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            raise ZooError(f"{file}: {problem} tensor '{names[0]}'{more}{then}")
    for key, want in expected.items():
        shape, dtype = header[key]
        if shape != tuple(want.shape):
            raise ZooError(f"{file}: tensor '{key}' has shape {shape}, expected {tuple(want.shape)}{then}")
        if dtype is not None and dtype != _SAFETENSORS_DTYPES.get(want.dtype, str(want.dtype)):
            raise ZooError(
                f"{file}: tensor '{key}' has dtype {dtype}, expected "
                f"{_SAFETENSORS_DTYPES.get(want.dtype, want.dtype)}{then}"
            )


def load_weights(model: nn.Module, file: Path) -> None:
    """Load safetensors weights strictly into ``model``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_tensors(model.state_dict(), read_header(file), file)
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ZooError(f"{file}: not a valid safetensors file ({exc})") from None
    model.load_state_dict(state, strict=True)
