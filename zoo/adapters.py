"""Adapters (parameter-efficient fine-tuning): the registered kind 'adapter', the layers they target in zoo's own
terms, the record of the base model an adapter directory was trained on, and merging.

An adapter factory is called as ``factory(*, encoder, **options)`` and changes the encoder in place: it adds
its parameters as submodules (LoRA swaps chosen ``nn.Linear`` layers for ones with a low-rank update). zoo
freezes the base weights first, trains what the factory added plus the head, saves only those, and merges by
replacing every module that has a ``merge_adapter()`` method with the module it returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .constants import ADAPTER_CONFIG_NAME as ADAPTER_CONFIG
from .errors import ZooError, did_you_mean
from .io import read_json
from .spec import PartChoice

if TYPE_CHECKING:
    from .model import ZooModel

ADAPTER_FORMAT = 1
TARGETS = ("qkv", "out", "ffn")  # zoo's names for the linear layers an adapter can target
# Every projection: on MiniLM and 3,000 tweets LoRA on qkv,out,ffn came within 0.1 points of full fine-tuning,
# qkv,out 4.6 points below it (bench/lora.py). An encoder may set its own with an ``adapter_targets`` attribute.
DEFAULT_TARGETS = "qkv,out,ffn"
_PROJECTIONS = {"qkv": ("q_proj", "k_proj", "v_proj"), "out": ("out_proj",)}


def is_attention(module: nn.Module) -> bool:
    """An attention that owns zoo's projections (zoo.nn.QKVAttention, or any module with q/k/v/out_proj)."""
    return all(
        isinstance(getattr(module, n, None), nn.Linear) for n in ("q_proj", "k_proj", "v_proj", "out_proj")
    )


def default_targets(encoder: nn.Module) -> str:
    return str(getattr(encoder, "adapter_targets", DEFAULT_TARGETS))


def parse_targets(targets: str | list[str] | tuple[str, ...]) -> list[str]:
    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else [str(t) for t in targets]
    names = [t for t in names if t]
    for name in names:
        if name not in TARGETS:
            raise ValueError(
                f"unknown target '{name}'{did_you_mean(name, TARGETS) or ';'} choices: {', '.join(TARGETS)}"
            )
    if not names:
        raise ValueError(f"targets is empty; choose from {', '.join(TARGETS)}")
    return names


def find_linears(encoder: nn.Module, targets: str | list[str] | tuple[str, ...]) -> dict[str, nn.Linear]:
    """{qualified name: nn.Linear} for zoo's target names: ``qkv`` (q_proj, k_proj, v_proj of each attention),
    ``out`` (its out_proj), ``ffn`` (every other linear layer of a repeated block, outside its attention)."""
    wanted = parse_targets(targets)
    attentions = [name for name, m in encoder.named_modules() if is_attention(m)]
    found: dict[str, nn.Linear] = {}
    for target in wanted:
        hits: dict[str, nn.Linear] = {}
        if target in _PROJECTIONS:
            for prefix in attentions:
                module = encoder.get_submodule(prefix)
                hits.update({f"{prefix}.{n}": getattr(module, n) for n in _PROJECTIONS[target]})
        else:
            blocks = {name for name, m in encoder.named_modules() if isinstance(m, nn.ModuleList)}
            for name, module in encoder.named_modules():
                inside_block = any(name.startswith(f"{b}.") for b in blocks)
                inside_attention = any(name.startswith(f"{a}.") for a in attentions)
                if isinstance(module, nn.Linear) and inside_block and not inside_attention:
                    hits[name] = module
        if not hits:
            raise ValueError(
                f"target '{target}' matches no linear layer of this encoder"
                + (" (its attention does not own q_proj/k_proj/v_proj/out_proj)" if target != "ffn" else "")
            )
        found.update(hits)
    return found


def replace_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def merge(root: nn.Module) -> int:
    """Replace each module with a ``merge_adapter()`` by what it returns; the number merged."""
    names = [name for name, m in root.named_modules() if name and callable(getattr(m, "merge_adapter", None))]
    for name in names:
        module: Any = root.get_submodule(name)  # one with a merge_adapter() method
        replace_module(root, name, module.merge_adapter())
    return len(names)


def attach(
    model: ZooModel, factory: Callable[..., Any], name: str, options: dict[str, Any]
) -> tuple[frozenset[str], frozenset[str]]:
    """Freeze ``model`` (a ZooModel), let the adapter ``factory`` change its encoder, then train what it added and
    the head. Returns the state-dict keys before, and the parameters that were frozen before."""
    keys = frozenset(model.state_dict())
    frozen = frozenset(n for n, p in model.named_parameters() if not p.requires_grad)
    model.requires_grad_(False)
    try:
        factory(encoder=model.encoder, **options)
    except (ValueError, TypeError) as exc:
        raise ZooError(f"adapter '{name}': {exc}") from exc
    if not any(p.requires_grad for p in model.encoder.parameters()):
        raise ZooError(f"adapter '{name}' added no trainable parameters to this encoder")
    model.head.requires_grad_(True)
    return keys, frozen


def merge_into(model: ZooModel, base_keys: frozenset[str], name: str) -> None:
    """Merge the adapter on ``model``'s encoder; every tensor left must be one of the base model's."""
    merge(model.encoder)
    left = sorted(k for k in model.state_dict() if k not in base_keys and not k.startswith("head."))
    if left:
        raise ZooError(f"adapter '{name}' cannot be merged: '{left[0]}' has no place in the base model")


def weights_digest(*files: Path) -> str:
    """sha256 of a base model's weights files, read in order: what an adapter directory records of its base."""
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass
class AdapterSpec:
    """adapter.json: which adapter (part, plugin, options) on which base model (directory and weights' sha256)."""

    adapter: PartChoice
    base: str  # the base model directory (zoo's, or a Hugging Face checkpoint's), absolute
    base_sha256: str  # of its weights files

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": ADAPTER_FORMAT,
            "adapter": dict(self.adapter.__dict__),
            "base": {"path": self.base, "sha256": self.base_sha256},
        }

    @classmethod
    def from_dict(cls, data: Any, source: str) -> AdapterSpec:
        try:
            version, part, base = data["format_version"], data["adapter"], data["base"]
            assert isinstance(version, int) and version <= ADAPTER_FORMAT
            choice = PartChoice(str(part["name"]), str(part["plugin"]), dict(part.get("options", {})))
            return cls(choice, str(base["path"]), str(base["sha256"]))
        except (KeyError, TypeError, ValueError, AssertionError):
            raise ZooError(
                f"{source}: not a valid adapter config (format_version {ADAPTER_FORMAT}, 'adapter', "
                "'base' with 'path' and 'sha256')"
            ) from None

    @classmethod
    def read(cls, directory: Path) -> AdapterSpec:
        return cls.from_dict(read_json(directory / ADAPTER_CONFIG), str(directory / ADAPTER_CONFIG))
