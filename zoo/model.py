"""Assembly: resolve parts in the registry, build encoder and head, save and load model directories."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from . import io
from .errors import ZooError, did_you_mean
from .manager import get_registry
from .registry import MODEL_PARTS, Part
from .spec import CONFIG_NAME, ENCODER_SIZES, TOKENIZER_NAME, WEIGHTS_NAME, ModelSpec, PartChoice, check_sizes

DEFAULT_ATTENTION = "sdpa"
# Keyword arguments the core passes to each kind of factory; anything else is a part option.
CONTRACT_ARGS = {
    "attention": {"d_model", "num_heads", "dropout", "rotary"},
    "encoder": {"attention", *ENCODER_SIZES},
    "head": {"d_model", "num_labels", "dropout"},
    "task": set(),
}


class BoundAttention:
    """An attention factory with the user's options bound; encoders call it once per layer. An encoder
    passes ``rotary`` (a zoo.nn.RotaryEmbedding) only to attentions with capability 'rotary'."""

    def __init__(self, part: Part, options: dict[str, Any]):
        self.factory, self.options, self.capabilities = part.load(), options, dict(part.capabilities)
        self.name = part.name

    def __call__(self, *, d_model: int, num_heads: int, dropout: float, rotary: nn.Module | None = None) -> nn.Module:
        if rotary is None:
            return self.factory(d_model=d_model, num_heads=num_heads, dropout=dropout, **self.options)
        if not self.capabilities.get("rotary"):
            raise ZooError(f"attention '{self.name}' does not apply rotary positions (no capability 'rotary')")
        if _takes(self.factory, "rotary"):
            return self.factory(d_model=d_model, num_heads=num_heads, dropout=dropout, rotary=rotary, **self.options)
        module = self.factory(d_model=d_model, num_heads=num_heads, dropout=dropout, **self.options)
        module.rotary = rotary  # a first-wave plugin that reads self.rotary but takes no rotary= argument
        return module


def _takes(factory: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def part_options(part: Part, given: dict[str, Any]) -> dict[str, Any]:
    """Check the user's options against the factory's signature and fill in its defaults."""
    try:
        params = inspect.signature(part.load()).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature to check against
        return dict(given)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(given)
    own = {n: p for n, p in params.items()
           if n not in CONTRACT_ARGS[part.kind] and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    for key in given:
        if key not in own:
            choices = f"options: {', '.join(own)}" if own else "it takes no options"
            raise ZooError(f"unknown option '{key}' for {part.kind} '{part.name}'{did_you_mean(key, own) or ';'} "
                           f"{choices}")
    defaults = {n: p.default for n, p in own.items() if p.default is not p.empty and _is_json(p.default)}
    return {**defaults, **given}


def _is_json(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


class ZooModel(nn.Module):
    """encoder(input_ids, mask) -> hidden (B, S, D); head(hidden, mask) -> logits."""

    def __init__(self, spec: ModelSpec, encoder: nn.Module, head: nn.Module, tokenizer: Any = None):
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        self.head = head
        self.tokenizer = tokenizer  # a tokenizers.Tokenizer, when the model has one

    def forward(self, input_ids: Tensor, attention_mask: Optional[Tensor] = None) -> Tensor:
        mask = None if attention_mask is None else attention_mask.bool()
        return self.head(self.encoder(input_ids, mask), mask)

    def loss(self, logits: Tensor, labels: Tensor, attention_mask: Optional[Tensor] = None) -> Tensor:
        mask = None if attention_mask is None else attention_mask.bool()
        return self.head.loss(logits, labels, mask)

    @property
    def labels(self) -> list[str] | None:
        return self.spec.labels

    @property
    def task(self):
        """The model's task object (zoo.tasks.Task): labels, batches, metrics and predictions."""
        from .tasks import load_task

        cached = self.__dict__.get("_task")
        if cached is None or cached[0] != self.spec.task.ref:
            self.__dict__["_task"] = cached = (self.spec.task.ref, load_task(self.spec.task))
        return cached[1]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, path: str | Path) -> Path:
        """Write config.json, model.safetensors (and tokenizer.json); each file atomically, config last."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with io.atomic_path(path / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        if self.tokenizer is not None:
            io.write_text(path / TOKENIZER_NAME, self.tokenizer.to_str())
        io.write_json(path / CONFIG_NAME, self.spec.to_dict())
        return path

    def extra_repr(self) -> str:
        s = self.spec
        return f"encoder={s.encoder.ref}, attention={s.attention.ref}, head={s.head.ref}, task={s.task.ref}"


def _resolve(kind: str, ref: str) -> Part:
    return get_registry().resolve(kind, ref)


def _resolve_recorded(kind: str, choice: PartChoice, source: str) -> Part:
    """A part named in a saved config; a plugin that is not installed gets a message that names it."""
    registry = get_registry()
    if not any(p.plugin == choice.plugin for p in registry.parts(kind)):
        raise ZooError(f"{source} needs {kind} '{choice.name}' from plugin '{choice.plugin}', which is not "
                       f"installed; install the package that provides '{choice.plugin}'")
    try:
        return registry.resolve(kind, choice.ref)
    except ZooError:
        raise ZooError(f"{source} needs {kind} '{choice.name}', which plugin '{choice.plugin}' "
                       "no longer provides") from None


def served_task(head: Part, given: str | None = None) -> Part:
    """The task part for a head: the one it names (or, from the first wave, its label format)."""
    from .tasks import head_task

    name = head_task(head.ref)
    if given is not None and given != name and _resolve("task", given).name != name:
        raise ZooError(f"head '{head.name}' serves task '{name}', not '{given}'; pick a head that serves it "
                       f"(zoo parts --kind head)")
    return _resolve("task", given or name)


def assemble(spec: ModelSpec, parts: dict[str, Part] | None = None) -> ZooModel:
    """Build a model with fresh weights from a spec (the part options in it are already checked)."""
    parts = parts or {k: _resolve_recorded(k, getattr(spec, k), "model") for k in MODEL_PARTS}
    sizes = spec.sizes
    attention = BoundAttention(parts["attention"], spec.attention.options)
    encoder_factory: Callable[..., nn.Module] = parts["encoder"].load()
    head_factory: Callable[..., nn.Module] = parts["head"].load()
    try:
        encoder = encoder_factory(attention=attention, **{k: sizes[k] for k in ENCODER_SIZES},
                                  **spec.encoder.options)
        head = head_factory(d_model=getattr(encoder, "d_model", sizes["d_model"]),
                            num_labels=sizes["num_labels"], dropout=sizes["dropout"], **spec.head.options)
    except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise ZooError(f"cannot build {spec.encoder.name}/{spec.attention.name}/{spec.head.name}: {exc}") from exc
    return ZooModel(spec, encoder, head)


def build_model(arch: str = "transformer", head: str = "cls", attention: str | None = None, *,
                labels: list[str] | None = None, attention_options: dict[str, Any] | None = None,
                encoder_options: dict[str, Any] | None = None, head_options: dict[str, Any] | None = None,
                task: str | None = None, task_options: dict[str, Any] | None = None,
                seed: int | None = None, **sizes: Any) -> ZooModel:
    """Assemble a model from named parts with fresh weights. The task is the one the head serves.

    ``sizes`` are d_model, num_layers, num_heads, ffn_dim, vocab_size, num_labels, max_length, dropout.
    """
    parts = {"encoder": _resolve("encoder", arch), "attention": _resolve("attention", attention or DEFAULT_ATTENTION),
             "head": _resolve("head", head)}
    parts["task"] = served_task(parts["head"], task)
    options = {"encoder": encoder_options or {}, "attention": attention_options or {}, "head": head_options or {},
               "task": task_options or {}}
    choices = {k: PartChoice(p.name, p.plugin, part_options(p, options[k])) for k, p in parts.items()}
    labels = [str(x) for x in labels] if labels is not None else None
    sizes["num_labels"] = _head_size(choices["task"], labels, sizes.get("num_labels"))
    spec = ModelSpec(choices["encoder"], choices["attention"], choices["head"], check_sizes(sizes), labels,
                     task=choices["task"])
    if seed is not None:
        torch.manual_seed(seed)
    return assemble(spec, parts)


def _head_size(task: PartChoice, labels: list[str] | None, num_labels: int | None) -> int | None:
    """The head's outputs: the task's fixed number (one score, whatever the labels), else one per label."""
    from .tasks import load_task

    fixed = load_task(task).num_outputs
    if fixed is not None:
        if num_labels not in (None, fixed):
            raise ZooError(f"task '{task.name}' has {fixed} output(s); num_labels cannot be {num_labels}")
        return fixed
    if labels is not None:
        if num_labels not in (None, len(labels)):
            raise ZooError(f"num_labels ({num_labels}) does not match the {len(labels)} labels given")
        return len(labels)
    return num_labels


def load_model(path: str | Path) -> ZooModel:
    """Load a model directory. Only JSON and safetensors are read: nothing is ever unpickled.

    The weights file's header is checked against a model built on the meta device first, so a hostile
    config.json (a billion layers, a huge vocabulary) fails before any memory is allocated for it.
    """
    path = Path(path)
    spec = ModelSpec.read(path)
    weights = path / WEIGHTS_NAME
    model = assemble_checked(spec, read_header(weights), str(path / CONFIG_NAME), weights)
    load_weights(model, weights)
    if (path / TOKENIZER_NAME).is_file():
        from .tokenizer import load_tokenizer

        model.tokenizer = load_tokenizer(path / TOKENIZER_NAME)
    model.eval()
    return model


def assemble_checked(spec: ModelSpec, header: dict[str, tuple[tuple[int, ...], str]], source: str,
                     weights: Path | str) -> ZooModel:
    """A fresh model for ``spec``, once its parts, options and every tensor's name, shape and dtype have
    been checked against the weights' ``header`` on the meta device (so nothing huge is allocated)."""
    if spec.task is None:  # a version-1 directory: its task is the one its head serves
        head = _resolve_recorded("head", spec.head, source)
        task = served_task(head)
        spec.task = PartChoice(task.name, task.plugin, {})
    parts = {k: _resolve_recorded(k, getattr(spec, k), source) for k in MODEL_PARTS}
    for kind, part in parts.items():  # reject options the installed part no longer knows
        part_options(part, getattr(spec, kind).options)
    check_labels(spec, spec.labels, source)
    if spec.sizes["num_layers"] > len(header):
        raise ZooError(f"{source}: num_layers is {spec.sizes['num_layers']} but the weights hold only "
                       f"{len(header)} tensors")
    with torch.device("meta"):
        check_tensors(assemble(spec, parts).state_dict(), header, Path(weights))
    return assemble(spec, parts)


def check_labels(spec: ModelSpec, labels: list[str] | None, source: str) -> None:
    """One label name per output, unless the task has a fixed number of outputs (one score for two labels)."""
    from .tasks import load_task

    if labels is not None and load_task(spec.task).num_outputs is None and len(labels) != spec.sizes["num_labels"]:
        raise ZooError(f"{source}: {len(labels)} labels but num_labels is {spec.sizes['num_labels']}")


def read_header(file: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, dtype)} from a safetensors header, without reading the data."""
    from safetensors import SafetensorError, safe_open

    if not file.is_file():
        raise ZooError(f"{file}: missing weights file")
    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ZooError(f"{file}: not a valid safetensors file ({exc})") from None


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
                       torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL", torch.uint8: "U8"}


def check_tensors(expected: dict[str, Tensor], header: dict[str, tuple[tuple[int, ...], str | None]],
                  file: Path | str, context: str = "") -> None:
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
            raise ZooError(f"{file}: tensor '{key}' has dtype {dtype}, expected "
                           f"{_SAFETENSORS_DTYPES.get(want.dtype, want.dtype)}{then}")


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


def summary(model: ZooModel, path: Path | None = None) -> dict[str, Any]:
    s = model.spec
    out: dict[str, Any] = {
        "encoder": s.encoder.ref, "attention": s.attention.ref, "head": s.head.ref, "task": s.task.ref,
        "parameters": model.num_parameters(), "sizes": s.sizes,
    }
    if path is not None:
        out["bytes_on_disk"] = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
    return out


__all__ = ["ZooModel", "assemble", "build_model", "load_model", "summary"]
