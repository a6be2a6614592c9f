"""The conformance kit: the checks the core's own matrix runs, for plugin authors to run on their parts.

    from zoo import testing

    def test_my_attention():
        testing.check_part("attention", "my-attn")  # with every built-in encoder and the cls head

    @pytest.mark.parametrize("encoder", testing.parts("encoder"))
    def test_with_each_encoder(encoder):
        testing.check_model(encoder=encoder, attention="my-attn", head="cls")

Each check builds a tiny model and fails with an AssertionError that names the part, its partners and
what broke, e.g. "attention 'x' with encoder 'bert' and head 'cls': output at real tokens changed by
3.1e-02 when padding was added (tolerance 1e-05)".
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor

from .errors import ExportMismatch, ZooError, unknown
from .manager import DEFAULT_PLUGINS, get_registry
from .model import DEFAULT_ATTENTION, ZooModel, build_model, load_model
from .registry import KINDS, MODEL_PARTS

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet  # what pytest.param returns

DEFAULT_ENCODER = "transformer"
DEFAULT_HEAD = "cls"
# Small enough that the whole core matrix runs in seconds; two layers so blocks feed into blocks.
TINY_SIZES: dict[str, Any] = {
    "vocab_size": 64,
    "d_model": 16,
    "num_layers": 2,
    "num_heads": 2,
    "ffn_dim": 32,
    "max_length": 32,
    "num_labels": 3,
    "dropout": 0.1,
}
PADDING_TOLERANCE = 1e-5
LENGTHS = (8, 6, 3)  # real tokens per row of the test batch; shorter rows are padded
EXTRA_PADDING = 4  # padding appended to every row for the padding-invariance check
SCRIPTED_KINDS = ("attention", "encoder", "head")  # the kinds whose module the kit scripts on its own


class TorchScriptFallback(UserWarning):
    """A part does not compile with torch.jit.script, so `zoo export --torchscript` traces models that use it."""


@dataclass
class Case:
    """One combination of parts under test; ``focus`` is the kind whose author reads the messages."""

    encoder: str
    attention: str
    head: str
    focus: str = "attention"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=lambda: dict(TINY_SIZES))
    seed: int = 0
    task: str = ""  # set when the focus is a task (the head serves it)

    def name(self, kind: str) -> str:
        return {"encoder": self.encoder, "attention": self.attention, "head": self.head, "task": self.task}[
            kind
        ]

    @property
    def label(self) -> str:
        others = " and ".join(
            f"{k} '{self.name(k)}'" for k in ("encoder", "attention", "head") if k != self.focus
        )
        return f"{self.focus} '{self.name(self.focus)}' with {others}"

    def fail(self, what: str) -> AssertionError:
        return AssertionError(f"{self.label}: {what}")


def builtin_names(kind: str) -> list[str]:
    """The names of the parts zoo itself ships for ``kind`` (the partners a plugin is checked against)."""
    return [p.name for p in get_registry().parts(_kind(kind)) if p.plugin in DEFAULT_PLUGINS]


def parts(kind: str, *, exclude: dict[str, str] | None = None) -> list[ParameterSet]:
    """pytest params for every part of ``kind`` registered now, by any plugin; ``exclude`` maps a
    name to the reason it is skipped. A name two plugins claim appears once per plugin as 'plugin:name'."""
    import pytest

    registry = get_registry()
    clashes = registry.clashes(_kind(kind))
    exclude = exclude or {}
    params = []
    for p in registry.parts(kind):
        ref = p.ref if p.name in clashes else p.name
        marks = [pytest.mark.skip(reason=exclude[p.name])] if p.name in exclude else []
        params.append(pytest.param(ref, id=ref, marks=marks))
    return params


def check_part(
    kind: str,
    name: str,
    *,
    options: dict[str, Any] | None = None,
    partners: list[str] | None = None,
    export: bool = True,
    sizes: dict[str, Any] | None = None,
    seed: int = 0,
) -> list[str]:
    """Run every check on one part with each partner; returns the combinations checked.

    An attention is checked with every built-in encoder and the cls head; an encoder with every built-in
    attention and the cls head; a head on the default encoder (``partners`` lists encoders for it) with
    its own loss and its task; a task with every head that serves it (``partners`` lists heads) on the
    default encoder. ``options`` are the part's own options; ``export=False`` skips ONNX/TorchScript.
    """
    kind = _kind(kind)
    part = get_registry().resolve(kind, name)  # an unknown name is a ZooError with a suggestion
    if kind == "attention":
        cases = [Case(e, name, DEFAULT_HEAD) for e in partners or builtin_names("encoder")]
    elif kind == "encoder":
        cases = [Case(name, a, DEFAULT_HEAD) for a in partners or builtin_names("attention")]
    elif kind == "task":
        heads = partners or serving_heads(part.name)
        if not heads:
            raise AssertionError(
                f"task '{name}': no registered head serves it; register one with task='{name}'"
            )
        cases = [Case(DEFAULT_ENCODER, DEFAULT_ATTENTION, h, task=part.name) for h in heads]
    elif kind == "head":
        cases = [Case(e, DEFAULT_ATTENTION, name) for e in partners or [DEFAULT_ENCODER]]
    else:
        raise unknown("kind to check", kind, MODEL_PARTS)
    done = []
    for case in cases:
        case.focus, case.options, case.seed = (
            kind,
            {"head" if kind == "task" else kind: dict(options or {})},
            seed,
        )
        case.sizes.update(sizes or {})
        run_checks(case, export=export)
        done.append(case.label)
    return done


def check_model(
    *,
    encoder: str = DEFAULT_ENCODER,
    attention: str = DEFAULT_ATTENTION,
    head: str = DEFAULT_HEAD,
    focus: str = "attention",
    options: dict[str, dict[str, Any]] | None = None,
    sizes: dict[str, Any] | None = None,
    export: bool = True,
    seed: int = 0,
) -> list[str]:
    """Run every check on one combination; ``options`` maps a kind to that part's options.
    Returns the names of the checks that ran."""
    case = Case(
        encoder, attention, head, _kind(focus), dict(options or {}), {**TINY_SIZES, **(sizes or {})}, seed
    )
    return run_checks(case, export=export)


def check_script(
    kind: str,
    name: str,
    *,
    options: dict[str, Any] | None = None,
    sizes: dict[str, Any] | None = None,
    seed: int = 0,
) -> str:
    """torch.jit.script of one part's module alone (an attention, an encoder or a head, built as
    ``check_part`` builds it), run against the eager module. Returns "script"; a part that does not compile
    fails with an AssertionError that names the construct, its file and line."""
    kind = _kind(kind)
    if kind not in SCRIPTED_KINDS:
        raise unknown("kind to script", kind, SCRIPTED_KINDS)
    part = get_registry().resolve(kind, name)
    encoder = name if kind == "encoder" else DEFAULT_ENCODER
    case = Case(
        encoder,
        name if kind == "attention" else DEFAULT_ATTENTION,
        name if kind == "head" else DEFAULT_HEAD,
        kind,
        {kind: dict(options or {})},
        {**TINY_SIZES, **(sizes or {})},
        seed,
    )
    failure = script_part(case, build(case), part)
    if failure is not None:
        raise case.fail(f"does not compile with torch.jit.script: {failure}")
    return "script"


def serving_heads(task: str) -> list[str]:
    """The registered heads that serve ``task``."""
    from .tasks import head_task

    return [p.name for p in get_registry().parts("head") if head_task(p.ref) == task]


def run_checks(case: Case, *, export: bool) -> list[str]:
    registry = get_registry()
    resolved = {kind: registry.resolve(kind, case.name(kind)) for kind in ("encoder", "attention", "head")}
    ran = []
    if case.focus == "attention":
        check_attention_module(case)
        ran.append("attention-contract")
    model = build(case)
    resolved["task"] = registry.resolve("task", model.spec.task_choice.ref)
    batch = make_batch(case)
    check_shapes(case, model, batch)
    check_mask_and_loss(case, model, batch)
    check_backward(case, model, batch)
    check_padding(case, model, batch)
    check_determinism(case, model, batch)
    check_task(case, model, batch)
    ran += ["shapes", "mask-and-loss", "backward", "padding", "determinism", "task"]
    if export and case.focus in SCRIPTED_KINDS:
        method = check_script_of_part(case, model, resolved[case.focus])
        if method is not None:
            ran.append(f"torchscript-{method}")
    with tempfile.TemporaryDirectory(prefix="zoo-kit-") as tmp:
        check_save_load(case, model, batch, Path(tmp) / "model")
        ran.append("save-load")
        if export:
            onnx = all(p.capabilities.get("onnx", True) for p in resolved.values())
            torchscript = all(p.capabilities.get("torchscript", True) for p in resolved.values())
            if onnx or torchscript:
                check_export(case, model, Path(tmp) / "export", onnx=onnx, torchscript=torchscript)
                ran.append("export")
    return ran


def build(case: Case) -> ZooModel:
    """The case's model; a task with a fixed number of outputs (one score per text) sets the head's size."""
    fixed = _task_outputs(get_registry().resolve("head", case.head))
    if fixed:
        case.sizes["num_labels"] = fixed
    try:
        return build_model(
            case.encoder,
            case.head,
            case.attention,
            seed=case.seed,
            attention_options=case.options.get("attention"),
            encoder_options=case.options.get("encoder"),
            head_options=case.options.get("head"),
            **case.sizes,
        )
    except Exception as exc:
        raise case.fail(f"building the model failed: {_why(exc)}") from exc


def make_batch(case: Case) -> tuple[Tensor, Tensor]:
    """input_ids (B, S) and an int64 attention mask whose rows have LENGTHS real tokens.
    Padding positions hold random ids too, so a part that looks at them shows up."""
    generator = torch.Generator().manual_seed(case.seed + 1)
    seq = max(LENGTHS)
    ids = torch.randint(1, case.sizes["vocab_size"], (len(LENGTHS), seq), generator=generator)
    mask = (torch.arange(seq)[None, :] < torch.tensor(LENGTHS)[:, None]).long()
    return ids, mask


def make_labels(task: Any, batch: int, seq: int, num_labels: int, generator: torch.Generator) -> Tensor:
    """Labels for a batch, shaped as ``task`` (a zoo.tasks.Task or a task name) collates them."""
    from .tasks import load_task

    task = load_task(task) if isinstance(task, str) else task
    return task.synthetic_labels(batch, seq, num_labels, generator)


def check_attention_module(case: Case) -> None:
    """The attention factory alone: forward(x (B,S,D), mask (B,S) | None) -> (B,S,D)."""
    factory = get_registry().resolve("attention", case.attention).load()
    d_model, num_heads = case.sizes["d_model"], case.sizes["num_heads"]
    try:
        module = factory(
            d_model=d_model, num_heads=num_heads, dropout=0.0, **case.options.get("attention", {})
        )
    except Exception as exc:
        raise case.fail(
            f"factory(d_model={d_model}, num_heads={num_heads}, dropout=0.0) failed: {_why(exc)}"
        ) from exc
    module.eval()
    x = torch.randn(2, 5, d_model, generator=torch.Generator().manual_seed(case.seed))
    full = torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        out = _call(case, "forward(x, mask)", module, x, full)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise case.fail(
                f"forward(x, mask) returned {got}; expected a tensor shaped like x {tuple(x.shape)}"
            )
        again = module(x, full)
        if not torch.equal(out, again):
            raise case.fail(
                f"two eval-mode calls on the same input differ by {_max_diff(out, again):.1e}; "
                "is dropout or sampling active outside training?"
            )
        unmasked = _call(case, "forward(x, None)", module, x, None)
    diff = _max_diff(out, unmasked)
    if diff > PADDING_TOLERANCE:
        raise case.fail(
            f"forward(x, None) differs from forward(x, all-True mask) by {diff:.1e}; "
            "mask=None means every token is real"
        )


def check_shapes(case: Case, model: ZooModel, batch: tuple[Tensor, Tensor]) -> None:
    """Encoder output (B, S, d_model), logits shaped for the head's labels, finite, repeatable in eval."""
    ids, mask = batch
    d_model = getattr(model.encoder, "d_model", None)
    if not isinstance(d_model, int):
        raise case.fail("the encoder module has no integer `d_model` attribute (the head is built with it)")
    model.eval()
    with torch.no_grad():
        hidden = _call(case, "encoder forward", model.encoder, ids, mask.bool())
        if not isinstance(hidden, Tensor) or tuple(hidden.shape) != (*ids.shape, d_model):
            got = tuple(hidden.shape) if isinstance(hidden, Tensor) else type(hidden).__name__
            raise case.fail(
                f"encoder returned {got}; expected (batch, seq, d_model) = {(*ids.shape, d_model)}"
            )
        logits = _call(case, "head forward", model.head, hidden, mask.bool())
        again = model.head(model.encoder(ids, mask.bool()), mask.bool())
    num_labels = case.sizes["num_labels"]
    want = model.task.output_shape(ids.shape[0], ids.shape[1], num_labels)
    if not isinstance(logits, Tensor) or not _shape_fits(tuple(logits.shape), want):
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise case.fail(f"head returned {got}; expected {want} for task '{model.task.name}'")
    if not torch.equal(logits, again):
        raise case.fail(
            f"two eval-mode calls on the same input differ by {_max_diff(logits, again):.1e}; "
            "is dropout or sampling active outside training?"
        )
    for what, tensor in (("encoder output", hidden), ("logits", logits)):
        if not torch.isfinite(tensor).all():
            raise case.fail(f"{what} contains NaN or inf")


def _shape_fits(got: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    """A task's output_shape may leave a width to the head (None)."""
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


def check_mask_and_loss(case: Case, model: ZooModel, batch: tuple[Tensor, Tensor]) -> None:
    """What zoo guarantees the parts: the model's 0/1 int attention_mask reaches the encoder, the head and
    the head's loss as a bool (B, S) tensor, True for real tokens; without an attention_mask they get None.
    The loss, called positionally as loss(logits, labels, mask), returns a scalar with either mask."""
    ids, mask = batch
    seen: dict[str, list[Any]] = {"encoder": [], "head": [], "loss": []}
    hooks = [
        getattr(model, kind).register_forward_pre_hook(
            lambda module, args, kind=kind: seen[kind].append(args[1] if len(args) > 1 else None)
        )
        for kind in ("encoder", "head")
    ]
    head_loss = cast("Callable[..., Tensor]", model.head.loss)

    def recording_loss(logits: Tensor, labels: Tensor, loss_mask: Tensor | None = None) -> Tensor:
        seen["loss"].append(loss_mask)
        return head_loss(logits, labels, loss_mask)

    generator = torch.Generator().manual_seed(case.seed + 5)
    labels = make_labels(model.task, ids.shape[0], ids.shape[1], case.sizes["num_labels"], generator)
    model.eval()
    model.head.loss = recording_loss  # type: ignore[assignment]  # an instance attribute: ZooModel.loss finds it first
    try:
        with torch.no_grad():
            for attention_mask in (mask, None):
                given = "a bool mask" if attention_mask is not None else "mask=None"
                logits = _call(case, f"forward with {given}", model, ids, attention_mask)
                loss = _call(
                    case,
                    f"head loss(logits, labels, mask) with {given}",
                    model.loss,
                    logits,
                    labels,
                    attention_mask,
                )
                if not isinstance(loss, Tensor) or loss.dim() != 0 or not torch.isfinite(loss):
                    raise case.fail(
                        f"head loss(logits, labels, mask) with {given} returned {loss!r}; expected a "
                        "finite scalar tensor (the mean over the batch)"
                    )
    finally:
        del model.head.loss
        for hook in hooks:
            hook.remove()
    for kind, got in seen.items():
        given, none = got[0], got[-1]
        if (
            not (
                isinstance(given, Tensor)
                and given.dtype == torch.bool
                and tuple(given.shape) == tuple(ids.shape)
                and torch.equal(given, mask.bool())
            )
            or none is not None
        ):
            raise AssertionError(
                f"zoo passed the {kind} mask={_kind_of(given)} for an int attention_mask and "
                f"mask={_kind_of(none)} without one; expected a bool (B, S) tensor and None "
                "(a bug in zoo, not in the part)"
            )


def check_script_of_part(case: Case, model: ZooModel, part: Any) -> str | None:
    """torch.jit.script of the part's module alone (the attention, the encoder or the head): 'script' when it
    compiles (and then it must compute what the eager module does), 'trace' when it does not. A failure is a
    TorchScriptFallback warning, or an AssertionError when the part declares capabilities={'torchscript':
    'script'}. None when the part declares 'trace' or False (nothing to check)."""
    declared = part.capabilities.get("torchscript", True)
    if declared is False or declared == "trace":
        return None
    key = (case.focus, part.ref, json.dumps(case.options.get(case.focus) or {}, sort_keys=True, default=str))
    if key not in _SCRIPTED:
        _SCRIPTED[key] = script_part(case, model, part)
    failure = _SCRIPTED[key]
    if failure is None:
        return "script"
    what = f"{case.focus} '{part.name}' (plugin '{part.plugin}') does not compile with torch.jit.script"
    if declared == "script":
        raise case.fail(f"{what}, although it declares capabilities={{'torchscript': 'script'}}: {failure}")
    warnings.warn(
        f"{what}, so `zoo export --torchscript` traces models that use it: {failure}. Declare "
        "capabilities={'torchscript': 'trace'} to say so, or {'torchscript': 'script'} to make this an "
        "error",
        TorchScriptFallback,
        stacklevel=2,
    )
    return "trace"


_SCRIPTED: dict[tuple[str, str, str], str | None] = {}  # one scripting attempt per part and options


def script_part(case: Case, model: ZooModel, part: Any) -> str | None:
    """Script the focus part's module alone and compare it with the eager module; None when both hold, else
    the reason in one line (the construct, its file and line)."""
    from zoo.export.torchscript import try_script

    ids, mask = make_batch(case)
    mask = mask.bool()
    if case.focus == "attention":
        factory = part.load()
        module = factory(
            d_model=case.sizes["d_model"],
            num_heads=case.sizes["num_heads"],
            dropout=0.0,
            **case.options.get("attention", {}),
        )
        inputs: tuple[Tensor, ...] = (
            torch.randn(
                *ids.shape, case.sizes["d_model"], generator=torch.Generator().manual_seed(case.seed)
            ),
            mask,
        )
    elif case.focus == "encoder":
        module, inputs = model.encoder, (ids, mask)
    else:
        with torch.no_grad():
            module, inputs = model.head, (model.encoder.eval()(ids, mask), mask)
    module.eval()
    scripted, failure = try_script(module)
    if failure is not None:
        return str(failure)
    assert scripted is not None  # try_script returns one of the two
    with torch.no_grad():
        eager, compiled = module(*inputs), scripted(*inputs)
    diff = _max_diff(eager, compiled)
    if diff > PADDING_TOLERANCE:
        raise case.fail(
            f"the torch.jit.script of the {case.focus} alone differs from the eager module by "
            f"{diff:.1e}; an `if torch.jit.is_scripting()` branch must compute the same thing"
        )
    return None


def _kind_of(mask: Any) -> str:
    if mask is None:
        return "None"
    if isinstance(mask, Tensor):
        return f"{str(mask.dtype).replace('torch.', '')} tensor {tuple(mask.shape)}"
    return type(mask).__name__


def check_backward(case: Case, model: ZooModel, batch: tuple[Tensor, Tensor]) -> None:
    """A training step's forward and backward; every parameter must get a finite gradient."""
    ids, mask = batch
    model.train()
    model.zero_grad(set_to_none=True)
    generator = torch.Generator().manual_seed(case.seed + 2)
    labels = make_labels(model.task, ids.shape[0], ids.shape[1], case.sizes["num_labels"], generator)
    logits = _call(case, "forward in training mode", model, ids, mask)
    loss = _call(
        case,
        f"head loss with task '{model.task.name}' labels of shape {tuple(labels.shape)}",
        model.loss,
        logits,
        labels,
        mask,
    )
    if not isinstance(loss, Tensor) or loss.dim() != 0 or not torch.isfinite(loss):
        raise case.fail(f"head loss returned {loss!r}; expected a finite scalar tensor")
    _call(case, "backward", loss.backward)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in named if p.grad is None]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise case.fail(f"parameter '{missing[0]}'{more} received no gradient; is it used in forward?")
    bad = [n for n, p in named if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        raise case.fail(f"parameter '{bad[0]}' received a NaN or inf gradient")
    model.zero_grad(set_to_none=True)


def check_padding(case: Case, model: ZooModel, batch: tuple[Tensor, Tensor]) -> None:
    """Each row alone, unpadded, must give the outputs it gives in the padded batch (eval mode)."""
    ids, mask = batch
    generator = torch.Generator().manual_seed(case.seed + 3)
    pad_ids = torch.randint(1, case.sizes["vocab_size"], (ids.shape[0], EXTRA_PADDING), generator=generator)
    ids = torch.cat([ids, pad_ids], dim=1)
    mask = torch.cat([mask, torch.zeros_like(pad_ids)], dim=1).bool()
    model.eval()
    worst_hidden = worst_logits = worst_none = worst_head_none = 0.0
    with torch.no_grad():
        hidden = _call(case, "encoder forward on a padded batch", model.encoder, ids, mask)
        logits = model.head(hidden, mask)
        for row, length in enumerate(LENGTHS):
            alone_ids, alone_mask = ids[row : row + 1, :length], torch.ones(1, length, dtype=torch.bool)
            alone = model.encoder(alone_ids, alone_mask)
            alone_logits = model.head(alone, alone_mask)
            worst_hidden = max(worst_hidden, _max_diff(hidden[row, :length], alone[0]))
            padded_logits = logits[row, :length] if model.task.per_token else logits[row]
            worst_logits = max(worst_logits, _max_diff(padded_logits, alone_logits[0]))
            worst_none = max(worst_none, _max_diff(model.encoder(alone_ids, None), alone))
            worst_head_none = max(worst_head_none, _max_diff(model.head(alone, None), alone_logits))
    if worst_hidden > PADDING_TOLERANCE:
        raise case.fail(
            f"output at real tokens changed by {worst_hidden:.1e} when padding was added "
            f"(tolerance {PADDING_TOLERANCE:.0e}); the mask is True for real tokens, False for padding"
        )
    if worst_logits > PADDING_TOLERANCE:
        raise case.fail(
            f"head output changed by {worst_logits:.1e} when padding was added "
            f"(tolerance {PADDING_TOLERANCE:.0e}); pool and predict over real tokens only"
        )
    if worst_none > PADDING_TOLERANCE:
        raise case.fail(f"encoder output with mask=None differs from an all-True mask by {worst_none:.1e}")
    if worst_head_none > PADDING_TOLERANCE:
        raise case.fail(
            f"head output with mask=None differs from an all-True mask by {worst_head_none:.1e}; "
            "mask=None means every token is real"
        )


def check_determinism(case: Case, model: ZooModel, batch: tuple[Tensor, Tensor]) -> None:
    """The same seed gives the same weights and the same outputs."""
    twin = build(case)
    ours, theirs = model.state_dict(), twin.state_dict()
    if ours.keys() != theirs.keys():
        raise case.fail("two builds with the same seed have different parameter names")
    for key, value in ours.items():
        if not torch.equal(value, theirs[key]):
            raise case.fail(
                f"two builds with seed {case.seed} differ in '{key}'; draw initial values from "
                "torch's global RNG only"
            )
    model.eval()
    twin.eval()
    with torch.no_grad():
        first, other = model(*batch), twin(*batch)
    if not torch.equal(first, other):
        raise case.fail(
            f"two builds with seed {case.seed} give outputs that differ by {_max_diff(first, other):.1e}"
        )


def check_task(case: Case, model: ZooModel, batch: tuple[Tensor, Tensor]) -> None:
    """The task scores the model's outputs against its own synthetic labels: a finite main metric and loss,
    a perfect agreement of an output with itself."""
    import numpy as np

    task, (ids, mask) = model.task, batch
    model.eval()
    with torch.no_grad():
        logits = model(ids, mask).float().numpy()
    lengths = mask.sum(dim=1).tolist()
    outputs = [logits[i, :n] if task.per_token else logits[i] for i, n in enumerate(lengths)]
    generator = torch.Generator().manual_seed(case.seed + 4)
    labels = make_labels(task, ids.shape[0], ids.shape[1], case.sizes["num_labels"], generator).numpy()
    targets = [labels[i, :n] if task.per_token else labels[i] for i, n in enumerate(lengths)]
    names = [f"label{i}" for i in range(case.sizes["num_labels"])] if task.named_labels else None
    metrics = _call(case, f"task '{task.name}' evaluate", task.evaluate, outputs, targets, names)
    for key in (task.main_metric, "loss"):
        value = metrics.get(key) if isinstance(metrics, dict) else None
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            raise case.fail(f"task '{task.name}' evaluate gave {key}={value!r}; expected a finite number")
    same = _call(case, f"task '{task.name}' agreement", task.agreement, [(logits, logits, mask.numpy())])
    if not isinstance(same, dict) or same.get("agreement") != 1.0:
        raise case.fail(f"task '{task.name}' agreement of an output with itself is {same!r}; expected 1.0")


def check_save_load(case: Case, model: ZooModel, batch: tuple[Tensor, Tensor], path: Path) -> None:
    """model.save -> zoo.load_model reproduces the outputs exactly."""
    model.eval()
    with torch.no_grad():
        before = model(*batch)
    try:
        model.save(path)
        loaded = load_model(path)
    except Exception as exc:
        raise case.fail(f"save -> load_model failed: {_why(exc)}") from exc
    with torch.no_grad():
        after = loaded(*batch)
    if not torch.equal(before, after):
        raise case.fail(
            f"the reloaded model's outputs differ by {_max_diff(before, after):.1e}; keep every "
            "tensor the output depends on in a parameter or a persistent buffer"
        )


def check_export(case: Case, model: ZooModel, path: Path, *, onnx: bool, torchscript: bool) -> None:
    """ONNX and TorchScript parity through zoo.export (each skipped when a part declares it cannot)."""
    try:
        from zoo.export import export_model
    except ImportError as exc:
        raise case.fail(
            f"zoo.export is not available ({exc}); pass export=False to skip the export check"
        ) from exc
    formats = " and ".join(f for f, on in (("ONNX", onnx), ("TorchScript", torchscript)) if on)
    try:
        export_model(model, path, onnx=onnx, torchscript=torchscript)
    except ExportMismatch as exc:
        raise case.fail(f"the {formats} export does not match the eager model: {exc}") from exc
    except Exception as exc:
        raise case.fail(
            f"{formats} export failed: {_why(exc)}; a part that cannot export declares "
            "capabilities={'onnx': False} or {'torchscript': False}"
        ) from exc


def _task_outputs(head: Any) -> int | None:
    from .tasks import head_task, load_task

    try:
        return load_task(head_task(head.ref)).num_outputs
    except ZooError:
        return None  # the build reports what is wrong in the case's terms


def _call(case: Case, what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        raise case.fail(f"{what} raised {_why(exc)}") from exc


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ZooError) else f"{type(exc).__name__}: {exc}"


def _max_diff(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise unknown("part kind", kind, KINDS)
    return kind


__all__ = [
    "DEFAULT_ATTENTION",
    "DEFAULT_ENCODER",
    "DEFAULT_HEAD",
    "TINY_SIZES",
    "Case",
    "TorchScriptFallback",
    "builtin_names",
    "check_model",
    "check_part",
    "check_script",
    "make_labels",
    "parts",
    "run_checks",
    "serving_heads",
]
