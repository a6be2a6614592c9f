"""The training state: where a run is (``TrainState``), and the resumable checkpoint that holds it in one
safetensors file, written atomically: model weights, AdamW moments and RNG states as tensors; everything
else (the TrainState, config, spec, tokenizer) as JSON in the file's metadata. Nothing is pickled."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo import io
from zoo.constants import STATE_NAME
from zoo.errors import ZooError


@dataclass
class TrainState:
    """Where a run is. Saved in every checkpoint; a resumed run continues from exactly here."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps done
    best: dict[str, Any] | None = None  # {"epoch", "metric", "value"} of the best evaluation so far
    bad_epochs: int = 0  # epochs since the best one (the patience counter)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch (metrics.jsonl)
    losses: list[list[float]] = field(default_factory=list)  # [step, loss] per optimizer step (curves)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        """A checkpoint's state (already type-checked by read_state); checkpoints without ``losses`` load."""
        return cls(
            **{k: data[k] for k in ("epoch", "batch", "step", "best", "bad_epochs", "history")},
            losses=list(data.get("losses") or []),
        )


def save_state(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, info: dict[str, Any]
) -> None:
    from safetensors.torch import save_file

    trained = getattr(
        model, "trained_state_dict", model.state_dict
    )()  # an adapter run: adapter and head only
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in trained.items()}
    optim = optimizer.state_dict()
    for index, slots in optim["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    groups = [dict(g.items()) for g in optim["param_groups"]]
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
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, KeyError, ValueError, OSError, RecursionError, RuntimeError) as exc:
        raise ZooError(f"{path}: not a zoo training checkpoint ({exc})") from None
    _check_info(path, info, tensors)
    return tensors, info


# the JSON fields of a state and their types; a hostile or damaged file fails here, in one line
_INFO_TYPES = {"position": dict, "config": dict, "spec": dict, "tokenizer": str, "param_groups": list}
_POSITION_TYPES = {"epoch": int, "batch": int, "step": int, "bad_epochs": int, "history": list}


def _check_info(path: Path, info: Any, tensors: dict[str, torch.Tensor]) -> None:
    def bad(what: str) -> ZooError:
        return ZooError(f"{path}: damaged training checkpoint ({what})")

    if not isinstance(info, dict):
        raise bad("its metadata is not a JSON object")
    for fields, data, where in (
        (_INFO_TYPES, info, ""),
        (_POSITION_TYPES, info.get("position") or {}, "position."),  # a dict: checked in the first round
    ):
        for key, kind in fields.items():
            value = data.get(key)
            if (
                not isinstance(value, kind)
                or isinstance(value, bool)
                or (kind is int and isinstance(value, int) and value < 0)
            ):
                raise bad(
                    f"'{where}{key}' is missing or not a {'non-negative ' if kind is int else ''}"
                    f"{kind.__name__}"
                )
    losses = info["position"].get("losses", [])
    if not isinstance(losses, list) or not all(
        isinstance(x, list) and len(x) == 2 and all(isinstance(v, (int, float)) for v in x) for x in losses
    ):
        raise bad("'position.losses' must be a list of [step, loss] pairs")
    labels = info.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise bad("'labels' must be a list of strings")
    if not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in info["param_groups"]):
        raise bad("'param_groups' must be objects with 'params'")
    if not isinstance(tensors.get("rng.torch"), torch.Tensor) or tensors["rng.torch"].dtype != torch.uint8:
        raise bad("no RNG state 'rng.torch'")


def model_from_state(
    path: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]
) -> tuple[Any, list[str] | None]:
    """The saved run's model and labels, checked like zoo.load_model: registered parts only, and the spec is checked
    against the saved tensors on the meta device before any memory is allocated for it."""
    from tokenizers import Tokenizer

    from zoo.adapters import AdapterSpec
    from zoo.model import _SAFETENSORS_DTYPES, adapted_model, assemble_checked, check_labels
    from zoo.spec import ModelSpec

    spec = ModelSpec.from_dict(info["spec"], str(path))
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    header = {k: (tuple(v.shape), _SAFETENSORS_DTYPES.get(v.dtype, str(v.dtype))) for k, v in weights.items()}
    if info.get("adapter") is not None:  # an adapter run: its base model from disk, then the adapter on it
        model = adapted_model(
            spec, AdapterSpec.from_dict(info["adapter"], str(path)), header, str(path), path
        )
    else:
        model = assemble_checked(spec, header, str(path), path)
    try:
        model.tokenizer = Tokenizer.from_str(info["tokenizer"])
    except Exception as exc:  # tokenizers raises its own exception type
        raise ZooError(f"{path}: damaged training checkpoint (its tokenizer: {exc})") from None
    labels = info.get("labels")
    try:
        check_labels(spec, labels, str(path))
    except ZooError as exc:
        raise ZooError(
            f"{path}: damaged training checkpoint ({str(exc).removeprefix(f'{path}: ')})"
        ) from None
    return model, labels


def restore(
    tensors: dict[str, torch.Tensor],
    info: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> None:
    """Weights, optimizer moments and RNG state as they were when the state was saved."""
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    getattr(model, "load_trained_state_dict", model.load_state_dict)(state)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            if (
                not index.isdigit()
                or int(index) >= len(params)
                or (name != "step" and value.shape != params[int(index)].shape)
            ):
                raise ZooError(f"optimizer tensor '{key}' of the training checkpoint does not fit the model")
            slots.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": slots, "param_groups": info["param_groups"]})
    except (ValueError, KeyError, TypeError) as exc:
        raise ZooError(f"the training checkpoint's optimizer state does not fit the model ({exc})") from None
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
