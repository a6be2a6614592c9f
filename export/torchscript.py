"""torch -> TorchScript: ``torch.jit.script`` where the parts allow it, ``torch.jit.trace`` otherwise.

The saved archive is loaded back with ``torch.jit.load`` (a TorchScript archive, not a pickle of user
objects) and that loaded module is what parity checks, so the file on disk is what gets verified. When
scripting fails, the part that does not script is found by scripting the head, the encoder and one
attention module alone, and the reason names it: which part, which plugin, which construct at which line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .onnx_export import quiet

if TYPE_CHECKING:
    from zoo.model import ZooModel


class LogitsModule(nn.Module):
    """(input_ids, attention_mask) -> logits with a fixed signature, whatever the model keeps beside."""

    def __init__(self, model: ZooModel):
        super().__init__()
        self.encoder = model.encoder
        self.head = model.head

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        mask = attention_mask.to(torch.bool)
        return self.head(self.encoder(input_ids, mask), mask)


@dataclass
class ScriptFailure:
    """Why ``torch.jit.script`` rejected a module, read from TorchScript's error: the construct (its first
    line), where it is (file, line, the source line), and the function that compiled it when it is
    another one (``'key_mask' is being compiled since it was called from 'LocalAttention.attend'``)."""

    error: str
    file: str = ""
    line: int = 0
    code: str = ""
    called_from: str = ""

    @property
    def where(self) -> str:
        if not self.file:
            return ""
        place = f" at {_short(self.file)}:{self.line}"
        if self.code:
            place += f" `{self.code}`"
        return place + (f" (compiled for {self.called_from})" if self.called_from else "")

    def __str__(self) -> str:
        return f"{self.error}{self.where}"


def explain(exc: BaseException) -> ScriptFailure:
    """A one-line account of a scripting error."""
    lines = [line.rstrip() for line in str(exc).strip().splitlines()]
    message = []
    for line in lines:
        if re.match(r'\s*File "', line):
            break
        if line.strip() not in ("", ":"):
            message.append(line.strip())
    first = message[0] if message else ""
    schema = re.match(r"(\w+)\(.*\) -> .+:?$", first)
    if schema and len(message) > 1:  # a call that does not fit a signature: the lines after it say why
        first = f"{schema.group(1)}(): " + " ".join(message[1:])
    error = f"{type(exc).__name__}: {first.rstrip(':.')}"
    for i, line in enumerate(lines):
        found = re.match(r'\s*File "(.+)", line (\d+)', line)
        if not found:
            continue
        code = ""
        for j in range(i + 1, len(lines)):
            if "<--- HERE" in lines[j]:
                code = lines[j - 1].strip() if j - 1 > i else ""
                break
        caller = ""
        for later in lines[i + 1 :]:
            called = re.search(r"'(.+)' is being compiled since it was called from '(.+)'", later)
            if called:
                caller = called.group(2)
                break
        return ScriptFailure(error, found.group(1), int(found.group(2)), code[:120], caller)
    return ScriptFailure(error)


def try_script(module: nn.Module) -> tuple[torch.jit.ScriptModule | None, ScriptFailure | None]:
    """``torch.jit.script(module)``, or None and the reason.

    After a failure TorchScript keeps half-compiled class types, and scripting the same class again fails
    with "Can't redefine method" instead of the real reason; a fresh type store avoids that.
    """
    try:
        with quiet():
            return torch.jit.script(module), None
    except Exception as exc:  # scripting rejects many Python constructs
        _forget_failed_types()
        return None, explain(exc)


def _forget_failed_types() -> None:
    recursive = getattr(torch.jit, "_recursive", None)
    store = getattr(recursive, "ConcreteTypeStore", None)
    if recursive is not None and store is not None:
        recursive.concrete_type_store = store()


def export_torchscript(
    model: ZooModel, example: tuple[Tensor, Tensor], path: Path, parts: dict[str, Any] | None = None
) -> dict[str, str]:
    """Write ``path``; returns {"method": "script" | "trace"}, and for a trace "script_error" (one line:
    the part that does not script and why). ``parts`` maps a kind to its registered Part (for names)."""
    wrapped = LogitsModule(model).eval()
    info: dict[str, str] = {}
    declared = [
        (kind, p) for kind, p in (parts or {}).items() if p.capabilities.get("torchscript") == "trace"
    ]
    compiled, failure = (None, None) if declared else try_script(wrapped)
    if compiled is not None:
        info["method"] = "script"
    else:
        if declared:
            kind, part = declared[0]
            reason = f"{_label(kind, part)} declares capability torchscript='trace'"
        else:
            reason = culprit(model, parts or {}, failure)
        info.update(method="trace", script_error=reason)
        with quiet(), torch.no_grad():
            compiled = torch.jit.trace(wrapped, example, check_trace=False)
    with quiet():
        torch.jit.save(compiled, str(path))
    return info


def culprit(model: ZooModel, parts: dict[str, Any], whole: ScriptFailure | None) -> str:
    """Script the head, an attention module and the encoder alone; the first that fails is named."""
    for kind, module in _modules(model, parts):
        _, failure = try_script(module)
        if failure is not None:
            return f"{_label(kind, parts.get(kind))} does not script: {failure}"
    return f"the model does not script: {whole}"


def _modules(model: ZooModel, parts: dict[str, Any]) -> list[tuple[str, nn.Module]]:
    found = [("head", model.head)]
    attention = parts.get("attention")
    cls = _factory_class(attention)
    if cls is not None:
        module = next((m for m in model.encoder.modules() if isinstance(m, cls)), None)
        if module is not None:
            found.append(("attention", module))
    found.append(("encoder", model.encoder))
    return [(kind, module.eval()) for kind, module in found]


def _factory_class(part: Any) -> type[nn.Module] | None:
    if part is None:
        return None
    try:
        factory = part.load()
    except Exception:
        return None
    return factory if isinstance(factory, type) else None


def _label(kind: str, part: Any) -> str:
    if part is None:
        return f"the {kind}"
    return f"{kind} '{part.name}' (plugin '{part.plugin}')"


def _short(file: str) -> str:
    """A path relative to the site-packages or source root it sits in, for a readable line."""
    parts = Path(file).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1 :])
    cwd = Path.cwd()
    try:
        return str(Path(file).relative_to(cwd))
    except ValueError:
        return file


def load_runner(path: Path):
    """A numpy-in, numpy-out runner over the saved archive, for parity."""
    with quiet():  # torch.jit.load warns that TorchScript is deprecated
        loaded = torch.jit.load(str(path), map_location="cpu")
    loaded.eval()

    def run(input_ids, attention_mask):
        with torch.no_grad():
            return loaded(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)).float().numpy()

    return run
