"""Assembly: resolve parts in the registry, build encoder and head, save and load model directories."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from . import io
from .constants import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME
from .errors import ZooError, did_you_mean
from .manager import get_registry
from .registry import MODEL_PARTS, Part
from .spec import CONFIG_NAME, ENCODER_SIZES, TOKENIZER_NAME, WEIGHTS_NAME, ModelSpec, PartChoice, check_sizes
from .types import AdapterArgs, AttentionArgs, EncoderArgs, EncoderFactory, HeadArgs, HeadFactory
from .weights import _SAFETENSORS_DTYPES, check_tensors, load_weights, read_header  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from .adapters import AdapterSpec
    from .tasks import Task

DEFAULT_ATTENTION = "sdpa"
# Keyword arguments the core passes to each kind of factory (zoo.types); anything else is a part option.
CONTRACT_ARGS: dict[str, set[str]] = {
    "attention": {*AttentionArgs.__required_keys__, "rotary"},  # rotary: only with capability 'rotary'
    "encoder": set(EncoderArgs.__required_keys__),
    "head": set(HeadArgs.__required_keys__),
    "task": set(),
    "adapter": set(AdapterArgs.__required_keys__),
}


class BoundAttention:
    """An attention factory with the user's options bound; encoders call it once per layer. An encoder
    passes ``rotary`` (a zoo.nn.RotaryEmbedding) only to attentions with capability 'rotary'."""

    def __init__(self, part: Part, options: dict[str, Any]):
        self.factory, self.options, self.capabilities = part.load(), options, dict(part.capabilities)
        self.name = part.name

    def __call__(
        self, *, d_model: int, num_heads: int, dropout: float, rotary: nn.Module | None = None
    ) -> nn.Module:
        if rotary is None:
            return self.factory(d_model=d_model, num_heads=num_heads, dropout=dropout, **self.options)
        if not self.capabilities.get("rotary"):
            raise ZooError(
                f"attention '{self.name}' does not apply rotary positions (no capability 'rotary')"
            )
        if _takes(self.factory, "rotary"):
            return self.factory(
                d_model=d_model, num_heads=num_heads, dropout=dropout, rotary=rotary, **self.options
            )
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
    own = {
        n: p
        for n, p in params.items()
        if n not in CONTRACT_ARGS[part.kind] and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    for key in given:
        if key not in own:
            choices = f"options: {', '.join(own)}" if own else "it takes no options"
            shown = str(key).encode("unicode_escape").decode("ascii")  # one line, whatever the file holds
            raise ZooError(
                f"unknown option '{shown}' for {part.kind} '{part.name}'{did_you_mean(key, own) or ';'} "
                f"{choices}"
            )
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
        self.adapter: AdapterSpec | None = None  # while an adapter is on (add_adapter, an adapter directory)
        self.loaded_from: Path | None = None  # the model directory load_model read, the base for add_adapter
        self._base_keys: frozenset[str] = frozenset()  # the state-dict keys before the adapter was added
        self._base_frozen: frozenset[str] = frozenset()  # parameters that did not train before it
        self.active_adapter: str | None = None  # its name among the adapters loaded over this base
        self._adapter_slots: dict[str, _AdapterSlot] = {}  # the inactive ones (load_adapter, set_adapter)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, groups: list[int] | None = None
    ) -> Tensor:
        """``groups``: sizes of consecutive row groups (summing to B) that run through the encoder one by
        one, each cut to its own longest row, for a head whose output is one vector per row (B, ...). A
        contrastive batch of short queries and long documents then computes no query padding."""
        mask = None if attention_mask is None else attention_mask.bool()
        if mask is None or not groups or len(groups) < 2:
            return self.head(self.encoder(input_ids, mask), mask)
        outputs = []
        for ids, part in zip(input_ids.split(groups), mask.split(groups)):
            width = max(1, int(part.sum(dim=1).max()))  # right padding: the longest row's length
            ids, part = ids[:, :width], part[:, :width]
            outputs.append(self.head(self.encoder(ids, part), part))
        return torch.cat(outputs)

    def loss(self, logits: Tensor, labels: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        mask = None if attention_mask is None else attention_mask.bool()
        return cast("Callable[..., Tensor]", self.head.loss)(logits, labels, mask)

    @property
    def labels(self) -> list[str] | None:
        return self.spec.labels

    @property
    def task(self) -> Task:
        """The model's task object (zoo.tasks.Task): labels, batches, metrics and predictions."""
        from .tasks import load_task

        cached = self.__dict__.get("_task")
        choice = self.spec.task_choice
        if cached is None or cached[0] != choice.ref:
            self.__dict__["_task"] = cached = (choice.ref, load_task(choice))
        return cached[1]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, path: str | Path) -> Path:
        """Write config.json, model.safetensors (and tokenizer.json); each file atomically, config last. With an
        adapter on, adapter.safetensors (the adapter's and the head's tensors) and adapter.json (the base) instead
        of model.safetensors: an adapter directory, which zoo.load_model loads onto its base."""
        from safetensors.torch import save_file

        path = Path(path)
        if self.adapter is not None and path.resolve() == Path(self.adapter.base):
            raise ZooError(f"{path} is the adapter's base model; save the adapter to another directory")
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.trained_state_dict().items()}
        weights, stale = (
            (WEIGHTS_NAME, (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME))
            if self.adapter is None
            else (ADAPTER_WEIGHTS_NAME, (WEIGHTS_NAME,))
        )
        for name in stale:
            (path / name).unlink(missing_ok=True)
        with io.atomic_path(path / weights) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        if self.tokenizer is not None:
            io.write_text(path / TOKENIZER_NAME, self.tokenizer.to_str())
        if self.adapter is not None:
            io.write_json(path / ADAPTER_CONFIG_NAME, self.adapter.to_dict())
        io.write_json(path / CONFIG_NAME, self.spec.to_dict())
        return path

    # ---- adapters (zoo/adapters.py) -------------------------------------------------------------------------
    def add_adapter(self, name: str = "lora", *, base: str | Path | None = None, **options: Any) -> ZooModel:
        """Freeze the base weights and put adapter ``name`` (a registered adapter part) on the encoder: from now
        on only the adapter and the head train, and ``save`` writes an adapter directory over ``base`` (default:
        the model directory this model was loaded from, whose weights it must still hold)."""
        from .adapters import AdapterSpec, weights_digest

        if self.adapter is not None:
            raise ZooError(f"this model already has adapter '{self.adapter.adapter.name}'; merge it first")
        base_dir = Path(base) if base is not None else self.loaded_from or _imported_from(self)
        if base_dir is None:
            raise ZooError(
                "an adapter needs its base model on disk (it records the base by path and weights): a zoo "
                "model directory, or the Hugging Face checkpoint this model was imported from, untrained"
            )
        part = _resolve("adapter", name)
        options = part_options(part, options)
        spec = AdapterSpec(
            PartChoice(part.name, part.plugin, options),
            str(base_dir.resolve()),
            weights_digest(*_base_files(base_dir)),
        )
        _apply_adapter(self, part, options)
        self.adapter, self.active_adapter = spec, "default"
        return self

    def load_adapter(self, path: str | Path, name: str | None = None) -> ZooModel:
        """Hold the adapter directory ``path`` beside the active adapter, under ``name`` (default: the
        directory's name), without a second copy of the base: it must have been trained over the same base
        weights with the same adapter and options (its head, labels and task may differ). ``set_adapter``
        switches."""
        if self.adapter is None:
            raise ZooError("load_adapter needs a model with an adapter on; load an adapter directory first")
        path = Path(path)
        name = name or path.name
        if name == self.active_adapter or name in self._adapter_slots:
            raise ZooError(f"an adapter named '{name}' is already loaded; pass another name")
        other = load_model(path)
        if other.adapter is None:
            raise ZooError(f"{path}: not an adapter directory (no {ADAPTER_CONFIG_NAME})")
        if other.adapter.base_sha256 != self.adapter.base_sha256:
            raise ZooError(f"{path}: trained over another base than this model's ({self.adapter.base})")
        if other.adapter.adapter != self.adapter.adapter:
            mine, theirs = self.adapter.adapter, other.adapter.adapter
            raise ZooError(
                f"{path}: adapter {theirs.name} {theirs.options} differs from this model's {mine.name} "
                f"{mine.options}; load it as a model of its own"
            )
        self._adapter_slots[name] = _AdapterSlot.of(other)
        return self

    @property
    def adapter_names(self) -> list[str]:
        """The adapters over this base, the active one first."""
        return ([self.active_adapter] if self.active_adapter else []) + list(self._adapter_slots)

    def set_adapter(self, name: str) -> ZooModel:
        """Make the loaded adapter ``name`` active: its adapter weights, head, labels and task."""
        if name == self.active_adapter:
            return self
        if name not in self._adapter_slots:
            known = self.adapter_names
            raise ZooError(
                f"no adapter '{name}'{did_you_mean(name, known) or ';'} loaded: {', '.join(known)}"
            )
        slot = self._adapter_slots.pop(name)
        if self.active_adapter is not None:
            self._adapter_slots[self.active_adapter] = _AdapterSlot.of(self)
        self.load_state_dict(slot.tensors, strict=False)
        device = next(self.encoder.parameters()).device
        self.head, self.spec, self.adapter = slot.head.to(device), slot.spec, slot.adapter
        self.active_adapter = name
        self.__dict__.pop("_task", None)
        return self

    def trained_state_dict(self) -> dict[str, Tensor]:
        """What training changes: every tensor of a plain model; the adapter's and the head's with an adapter on."""
        state = self.state_dict()
        if self.adapter is None:
            return state
        trainable = {f"encoder.{n}" for n, p in self.encoder.named_parameters() if p.requires_grad}
        return {
            k: v
            for k, v in state.items()
            if k.startswith("head.") or k not in self._base_keys or k in trainable
        }

    def load_trained_state_dict(self, state: dict[str, Tensor]) -> None:
        """The inverse of trained_state_dict: exactly its tensors, by name and shape."""
        check_tensors(
            self.trained_state_dict(), {k: (tuple(v.shape), None) for k, v in state.items()}, "state"
        )
        self.load_state_dict(state, strict=self.adapter is None)

    def merge_adapter(self) -> ZooModel:
        """Fold the adapter into the base weights, in place: a plain model again (outputs within 1e-5 in fp32)."""
        from .adapters import merge_into

        if self.adapter is None:
            return self
        merge_into(self, self._base_keys, self.adapter.adapter.name)
        self.spec.extra["adapter"] = {"merged": self.adapter.to_dict()}
        for n, p in self.named_parameters():
            p.requires_grad_(n not in self._base_frozen)
        self.adapter, self.loaded_from = None, None
        self.active_adapter, self._adapter_slots = None, {}
        return self

    def merged(self) -> ZooModel:
        """A plain copy with the adapter folded in; this model keeps its adapter."""
        import copy

        tokenizer, self.tokenizer = self.tokenizer, None
        try:
            twin = copy.deepcopy(self)
        finally:
            self.tokenizer = tokenizer
        twin.tokenizer = tokenizer
        return twin.merge_adapter()

    def extra_repr(self) -> str:
        s = self.spec
        return f"encoder={s.encoder.ref}, attention={s.attention.ref}, head={s.head.ref}, task={s.task_choice.ref}"


class _AdapterSlot:
    """An inactive adapter over a model's base: its encoder tensors (copies), head, spec and AdapterSpec."""

    def __init__(self, tensors: dict[str, Tensor], head: nn.Module, spec: ModelSpec, adapter: Any) -> None:
        self.tensors, self.head, self.spec, self.adapter = tensors, head, spec, adapter

    @classmethod
    def of(cls, model: ZooModel) -> _AdapterSlot:
        own = {
            k: v.detach().clone() for k, v in model.trained_state_dict().items() if not k.startswith("head.")
        }
        return cls(own, model.head, model.spec, model.adapter)


def _imported_from(model: ZooModel) -> Path | None:
    """The Hugging Face checkpoint an untrained imported model holds the weights of (spec.extra['source'])."""
    source = model.spec.extra.get("source") or {}
    if source.get("format") != "huggingface" or "training" in model.spec.extra:
        return None
    return Path(source["path"])


def _base_files(base_dir: Path) -> list[Path]:
    """The weights files of an adapter's base: a zoo model directory's, or a Hugging Face checkpoint's."""
    from .checkpoint import is_hf_checkpoint, weight_files

    if is_hf_checkpoint(base_dir):
        return weight_files(base_dir)
    if not (base_dir / WEIGHTS_NAME).is_file():
        raise ZooError(
            f"{base_dir}: no {WEIGHTS_NAME}; an adapter's base is a zoo model directory or a checkpoint"
        )
    return [base_dir / WEIGHTS_NAME]


def _base_encoder(
    base_dir: Path,
) -> tuple[dict[str, tuple[tuple[int, ...], str]], Callable[[], dict[str, Tensor]]]:
    """The header of an adapter base's encoder tensors, and how to read them (zoo names, 'encoder.…')."""
    from .checkpoint import encoder_weights, is_hf_checkpoint

    if is_hf_checkpoint(base_dir):
        tensors = encoder_weights(base_dir)
        return {k: (tuple(v.shape), "F32") for k, v in tensors.items()}, lambda: tensors
    file = base_dir / WEIGHTS_NAME
    header = {k: v for k, v in read_header(file).items() if k.startswith("encoder.")}

    def read() -> dict[str, Tensor]:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            return {k: f.get_tensor(k) for k in header}

    return header, read


def _apply_adapter(model: ZooModel, part: Part, options: dict[str, Any]) -> None:
    from .adapters import attach

    model._base_keys, model._base_frozen = attach(model, part.load(), part.name, options)


def _resolve(kind: str, ref: str) -> Part:
    return get_registry().resolve(kind, ref)


def _resolve_recorded(kind: str, choice: PartChoice, source: str) -> Part:
    """A part named in a saved config; a plugin that is not installed gets a message that names it."""
    registry = get_registry()
    if not any(p.plugin == choice.plugin for p in registry.parts(kind)):
        raise ZooError(
            f"{source} needs {kind} '{choice.name}' from plugin '{choice.plugin}', which is not "
            f"installed; install the package that provides '{choice.plugin}'"
        )
    try:
        return registry.resolve(kind, choice.ref)
    except ZooError:
        raise ZooError(
            f"{source} needs {kind} '{choice.name}', which plugin '{choice.plugin}' no longer provides"
        ) from None


def served_task(head: Part, given: str | None = None) -> Part:
    """The task part for a head: the one it names (or, from the first wave, its label format)."""
    from .tasks import head_task

    name = head_task(head.ref)
    if given is not None and given != name and _resolve("task", given).name != name:
        raise ZooError(
            f"head '{head.name}' serves task '{name}', not '{given}'; pick a head that serves it "
            f"(zoo parts --kind head)"
        )
    return _resolve("task", given or name)


def assemble(spec: ModelSpec, parts: dict[str, Part] | None = None) -> ZooModel:
    """Build a model with fresh weights from a spec (the part options in it are already checked)."""
    parts = parts or {k: _resolve_recorded(k, getattr(spec, k), "model") for k in MODEL_PARTS}
    sizes = spec.sizes
    attention = BoundAttention(parts["attention"], spec.attention.options)
    encoder_factory: EncoderFactory = parts["encoder"].load()
    head_factory: HeadFactory = parts["head"].load()
    try:
        encoder = encoder_factory(
            attention=attention, **{k: sizes[k] for k in ENCODER_SIZES}, **spec.encoder.options
        )
        head = head_factory(
            d_model=getattr(encoder, "d_model", sizes["d_model"]),
            num_labels=sizes["num_labels"],
            dropout=sizes["dropout"],
            **spec.head.options,
        )
        tie_head(head, encoder)
    except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise ZooError(
            f"cannot build {spec.encoder.name}/{spec.attention.name}/{spec.head.name}: {exc}"
        ) from exc
    return ZooModel(spec, encoder, head)


def tie_head(head: nn.Module, encoder: nn.Module) -> None:
    """A head with ``tie_weights(encoder)`` (the mlm decoder) shares the encoder's tensors it names."""
    tie = getattr(head, "tie_weights", None)
    if callable(tie):
        tie(encoder)


def build_model(
    arch: str = "transformer",
    head: str = "cls",
    attention: str | None = None,
    *,
    labels: list[str] | None = None,
    attention_options: dict[str, Any] | None = None,
    encoder_options: dict[str, Any] | None = None,
    head_options: dict[str, Any] | None = None,
    task: str | None = None,
    task_options: dict[str, Any] | None = None,
    seed: int | None = None,
    **sizes: Any,
) -> ZooModel:
    """Assemble a model from named parts with fresh weights. The task is the one the head serves.

    ``sizes`` are d_model, num_layers, num_heads, ffn_dim, vocab_size, num_labels, max_length, dropout.
    """
    parts = {
        "encoder": _resolve("encoder", arch),
        "attention": _resolve("attention", attention or DEFAULT_ATTENTION),
        "head": _resolve("head", head),
    }
    parts["task"] = served_task(parts["head"], task)
    options = {
        "encoder": encoder_options or {},
        "attention": attention_options or {},
        "head": head_options or {},
        "task": task_options or {},
    }
    choices = {k: PartChoice(p.name, p.plugin, part_options(p, options[k])) for k, p in parts.items()}
    labels = [str(x) for x in labels] if labels is not None else None
    sizes["num_labels"] = _head_size(choices["task"], labels, sizes.get("num_labels"))
    spec = ModelSpec(
        choices["encoder"],
        choices["attention"],
        choices["head"],
        check_sizes(sizes),
        labels,
        task=choices["task"],
    )
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


def load_model(path: str | os.PathLike[str]) -> ZooModel:
    """Load a model directory. Only JSON and safetensors are read: nothing is ever unpickled.

    The weights file's header is checked against a model built on the meta device first, so a hostile
    config.json (a billion layers, a huge vocabulary) fails before any memory is allocated for it.
    """
    path = Path(path)
    spec = ModelSpec.read(path)
    if (path / ADAPTER_CONFIG_NAME).is_file():
        model = _load_adapter_dir(path, spec)
    else:
        weights = path / WEIGHTS_NAME
        model = assemble_checked(spec, read_header(weights), str(path / CONFIG_NAME), weights)
        load_weights(model, weights)
        model.loaded_from = path.resolve()
    if (path / TOKENIZER_NAME).is_file():
        from .tokenizer import load_tokenizer

        model.tokenizer = load_tokenizer(path / TOKENIZER_NAME)
    model.eval()
    return model


def _load_adapter_dir(path: Path, spec: ModelSpec) -> ZooModel:
    """An adapter directory: its base model, the adapter on it, and the adapter's and the head's tensors."""
    from safetensors.torch import load_file

    from .adapters import AdapterSpec

    weights = path / ADAPTER_WEIGHTS_NAME
    model = adapted_model(
        spec, AdapterSpec.read(path), read_header(weights), str(path / ADAPTER_CONFIG_NAME), weights
    )
    model.load_trained_state_dict(load_file(str(weights)))
    model.active_adapter = path.resolve().name
    return model


def adapted_model(
    spec: ModelSpec,
    adapter: Any,
    header: dict[str, tuple[tuple[int, ...], str]],
    source: str,
    weights: Path | str,
) -> ZooModel:
    """The model of ``spec`` with its base's encoder weights and ``adapter`` (an AdapterSpec) on it; ``header``
    describes the adapter's and the head's tensors, still to be loaded. A different base is one error."""
    from .adapters import weights_digest

    base = Path(adapter.base)
    try:
        digest = weights_digest(*_base_files(base))
    except (ZooError, OSError):
        raise ZooError(
            f"{source}: its base model {adapter.base} is missing; the adapter loads only onto the base "
            "it was trained on"
        ) from None
    if digest != adapter.base_sha256:
        raise ZooError(
            f"{source}: the adapter was trained on a base with weights sha256 {adapter.base_sha256[:12]}…, "
            f"but {base} has {digest[:12]}…; it loads only onto the base it was trained on"
        )
    base_header, read_base = _base_encoder(base)
    part = _resolve_recorded("adapter", adapter.adapter, source)
    options = part_options(part, adapter.adapter.options)
    model = assemble_checked(
        spec, {**base_header, **header}, source, weights, adapt=lambda m: _apply_adapter(m, part, options)
    )
    model.load_state_dict(read_base(), strict=False)
    model.adapter = adapter
    return model


def assemble_checked(
    spec: ModelSpec,
    header: dict[str, tuple[tuple[int, ...], str]],
    source: str,
    weights: Path | str,
    adapt: Callable[[ZooModel], None] | None = None,
) -> ZooModel:
    """A fresh model for ``spec``, once its parts, options and every tensor's name, shape and dtype have
    been checked against the weights' ``header`` on the meta device (so nothing huge is allocated).
    ``adapt`` (an adapter's application) changes the model before the check and before it is returned."""
    if spec.task is None:  # a version-1 directory: its task is the one its head serves
        head = _resolve_recorded("head", spec.head, source)
        task = served_task(head)
        spec.task = PartChoice(task.name, task.plugin, {})
    parts = {k: _resolve_recorded(k, getattr(spec, k), source) for k in MODEL_PARTS}
    for kind, part in parts.items():  # reject options the installed part no longer knows
        part_options(part, getattr(spec, kind).options)
    check_labels(spec, spec.labels, source)
    if spec.sizes["num_layers"] > len(header):
        raise ZooError(
            f"{source}: num_layers is {spec.sizes['num_layers']} but the weights hold only "
            f"{len(header)} tensors"
        )
    with torch.device("meta"):
        meta = assemble(spec, parts)
        if adapt is not None:
            adapt(meta)
        check_tensors(meta.state_dict(), header, Path(weights))
    model = assemble(spec, parts)
    if adapt is not None:
        adapt(model)
    return model


def check_labels(spec: ModelSpec, labels: list[str] | None, source: str) -> None:
    """One label name per output, unless the task has a fixed number of outputs (one score for two labels)."""
    from .tasks import load_task

    if (
        labels is not None
        and load_task(spec.task_choice).num_outputs is None
        and len(labels) != spec.sizes["num_labels"]
    ):
        raise ZooError(f"{source}: {len(labels)} labels but num_labels is {spec.sizes['num_labels']}")


def summary(model: ZooModel, path: Path | None = None) -> dict[str, Any]:
    s = model.spec
    out: dict[str, Any] = {
        "encoder": s.encoder.ref,
        "attention": s.attention.ref,
        "head": s.head.ref,
        "task": s.task_choice.ref,
        "parameters": model.num_parameters(),
        "sizes": s.sizes,
    }
    if path is not None:
        out["bytes_on_disk"] = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
    return out


__all__ = ["ZooModel", "assemble", "build_model", "load_model", "summary"]
