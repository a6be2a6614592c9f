"""torch -> TorchScript: ``torch.jit.script`` where the parts allow it, ``torch.jit.trace`` otherwise.

The saved archive is loaded back with ``torch.jit.load`` (a TorchScript archive, not a pickle of user
objects) and that loaded module is what parity checks, so the file on disk is what gets verified.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .onnx_export import quiet


class LogitsModule(nn.Module):
    """(input_ids, attention_mask) -> logits with a fixed signature, whatever the model keeps beside."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.encoder = model.encoder
        self.head = model.head

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        mask = attention_mask.bool()
        return self.head(self.encoder(input_ids, mask), mask)


def export_torchscript(model: nn.Module, example: tuple[Tensor, Tensor], path: Path) -> dict[str, str]:
    """Write ``path``; returns {"method": "script" | "trace", "script_error": why scripting failed}."""
    wrapped = LogitsModule(model).eval()
    info: dict[str, str] = {}
    with quiet():
        try:
            compiled = torch.jit.script(wrapped)
            info["method"] = "script"
        except Exception as exc:  # scripting rejects many Python constructs; tracing records what runs
            reason = str(exc).strip().splitlines()
            info.update(method="trace", script_error=f"{type(exc).__name__}: {reason[0] if reason else ''}")
            with torch.no_grad():
                compiled = torch.jit.trace(wrapped, example, check_trace=False)
        torch.jit.save(compiled, str(path))
    return info


def load_runner(path: Path):
    """A numpy-in, numpy-out runner over the saved archive, for parity."""
    with quiet():  # torch.jit.load warns that TorchScript is deprecated
        loaded = torch.jit.load(str(path), map_location="cpu")
    loaded.eval()

    def run(input_ids, attention_mask):
        with torch.no_grad():
            return loaded(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)).float().numpy()

    return run
