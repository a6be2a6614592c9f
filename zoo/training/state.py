"""The resumable training state in one safetensors file, written atomically: model weights, AdamW
moments and RNG states as tensors; everything else (position, schedule, best score, spec, tokenizer)
as JSON in the file's metadata. Nothing is pickled."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from zoo import io
from zoo.errors import ZooError

STATE_NAME = "trainer_state.safetensors"


def save_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, info: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    for index, slots in optim["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    groups = [{k: v for k, v in g.items()} for g in optim["param_groups"]]
    metadata = {"format": "pt", "zoo_trainer": json.dumps({**info, "param_groups": groups})}
    with io.atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise ZooError(f"{path.parent}: nothing to resume (no {STATE_NAME}); run without --resume")
    try:
        with safe_open(str(path), framework="pt") as f:
            info = json.loads((f.metadata() or {})["zoo_trainer"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, KeyError, ValueError, OSError) as exc:
        raise ZooError(f"{path}: not a zoo training checkpoint ({exc})") from None
    return tensors, info


def restore(tensors: dict[str, torch.Tensor], info: dict[str, Any], model: torch.nn.Module,
            optimizer: torch.optim.Optimizer) -> None:
    """Weights, optimizer moments and RNG state as they were when the state was saved."""
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": info["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
