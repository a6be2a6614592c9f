"""The types a plugin is written against: each hook's ``register`` callback, and what zoo passes to each kind of
factory and expects back. zoo ships a ``py.typed`` marker, so a type checker (mypy, pyright) reads these
and flags a misspelt ``register`` keyword or a factory with the wrong signature or return type::

    from zoo import hookimpl
    from zoo.types import AttentionRegister

    @hookimpl
    def register_attention(register: AttentionRegister) -> None:
        register("my", MyAttention, description="...")

The factory Protocols list the keyword arguments zoo always passes; a factory may take more (its part options,
with defaults). The TypedDicts (``AttentionArgs``, ...) name the same keyword arguments: zoo.model's
``CONTRACT_ARGS``, which tells them apart from part options, is made from them. docs/plugins.md describes each
contract in words.

Importing this module imports neither torch nor any other part of zoo: the names it refers to are imported for
type checkers only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypedDict

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import nn

    from .hf import Checkpoint, EncoderImport
    from .nn import RotaryEmbedding
    from .tasks import Task

# ---- what zoo passes to each kind of factory ------------------------------------------------------------------


class AttentionArgs(TypedDict):
    """The keyword arguments of every attention factory call (once per encoder layer)."""

    d_model: int
    num_heads: int
    dropout: float


class EncoderArgs(TypedDict):
    """The keyword arguments of every encoder factory call: a bound attention factory and the sizes."""

    attention: BoundAttention
    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    max_length: int
    dropout: float


class HeadArgs(TypedDict):
    """The keyword arguments of every head factory call; ``d_model`` is the encoder's ``d_model``."""

    d_model: int
    num_labels: int
    dropout: float


class AdapterArgs(TypedDict):
    """The keyword argument of every adapter factory call: the encoder it changes in place."""

    encoder: nn.Module


# ---- the factories ------------------------------------------------------------------------------------------


class AttentionFactory(Protocol):
    """``factory(*, d_model, num_heads, dropout, **options) -> nn.Module`` whose
    ``forward(x (B, S, D), mask (B, S) bool or None) -> (B, S, D)``. An attention with capability ``rotary`` also
    takes ``rotary=`` (a zoo.nn.RotaryEmbedding)."""

    def __call__(self, *, d_model: int, num_heads: int, dropout: float) -> nn.Module: ...


class BoundAttention(Protocol):
    """What an encoder factory receives as ``attention``: the attention factory with the user's options bound.
    Call it once per layer; ``capabilities`` says whether it encodes positions itself or applies rotary ones."""

    name: str
    capabilities: dict[str, Any]

    def __call__(
        self, *, d_model: int, num_heads: int, dropout: float, rotary: RotaryEmbedding | None = None
    ) -> nn.Module: ...


class EncoderFactory(Protocol):
    """``factory(*, attention, vocab_size, d_model, num_layers, num_heads, ffn_dim, max_length, dropout,
    **options) -> nn.Module`` with a ``d_model`` attribute and
    ``forward(input_ids (B, S), mask (B, S) bool or None) -> (B, S, d_model)``."""

    def __call__(
        self,
        *,
        attention: BoundAttention,
        vocab_size: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        max_length: int,
        dropout: float,
    ) -> nn.Module: ...


class HeadFactory(Protocol):
    """``factory(*, d_model, num_labels, dropout, **options) -> nn.Module`` with
    ``forward(hidden (B, S, D), mask (B, S) bool or None) -> logits`` and
    ``loss(logits, labels, mask=None) -> scalar tensor`` (the mean over the batch)."""

    def __call__(self, *, d_model: int, num_labels: int, dropout: float) -> nn.Module: ...


class TaskFactory(Protocol):
    """``factory(**options) -> zoo.tasks.Task``; a Task subclass is one."""

    def __call__(self) -> Task: ...


class ImporterFactory(Protocol):
    """``factory(checkpoint) -> zoo.hf.EncoderImport``, called with the checkpoint as its one positional argument."""

    def __call__(self, checkpoint: Checkpoint, /) -> EncoderImport: ...


class AdapterFactory(Protocol):
    """``factory(*, encoder, **options) -> None``: changes the encoder in place (zoo has frozen it; what the
    factory adds, or sets ``requires_grad`` on, trains)."""

    def __call__(self, *, encoder: nn.Module) -> None: ...


# ---- the register callbacks ------------------------------------------------------------------------------------

Aliases: TypeAlias = "tuple[str, ...] | list[str]"
Capabilities: TypeAlias = (
    "Mapping[str, Any] | None"  # see docs/plugins.md, Capabilities; onnx and torchscript default to True
)


class AttentionRegister(Protocol):
    """The ``register`` argument of ``register_attention``. ``factory``: the factory or a lazy "module:attr" path."""

    def __call__(
        self,
        name: str,
        factory: AttentionFactory | str,
        *,
        description: str = "",
        aliases: Aliases = (),
        capabilities: Capabilities = None,
    ) -> None: ...


class EncoderRegister(Protocol):
    """The ``register`` argument of ``register_encoders``."""

    def __call__(
        self,
        name: str,
        factory: EncoderFactory | str,
        *,
        description: str = "",
        aliases: Aliases = (),
        capabilities: Capabilities = None,
    ) -> None: ...


class HeadRegister(Protocol):
    """The ``register`` argument of ``register_heads``; ``task`` names the task the head serves."""

    def __call__(
        self,
        name: str,
        factory: HeadFactory | str,
        *,
        description: str = "",
        aliases: Aliases = (),
        capabilities: Capabilities = None,
        task: str | None = None,
    ) -> None: ...


class TaskRegister(Protocol):
    """The ``register`` argument of ``register_tasks``."""

    def __call__(
        self,
        name: str,
        factory: TaskFactory | str,
        *,
        description: str = "",
        aliases: Aliases = (),
        capabilities: Capabilities = None,
    ) -> None: ...


class ImporterRegister(Protocol):
    """The ``register`` argument of ``register_importers``; the name is the Hugging Face ``model_type``."""

    def __call__(
        self,
        name: str,
        factory: ImporterFactory | str,
        *,
        description: str = "",
        aliases: Aliases = (),
        capabilities: Capabilities = None,
    ) -> None: ...


class AdapterRegister(Protocol):
    """The ``register`` argument of ``register_adapters``."""

    def __call__(
        self,
        name: str,
        factory: AdapterFactory | str,
        *,
        description: str = "",
        aliases: Aliases = (),
        capabilities: Capabilities = None,
    ) -> None: ...


__all__ = [
    "AdapterArgs",
    "AdapterFactory",
    "AdapterRegister",
    "AttentionArgs",
    "AttentionFactory",
    "AttentionRegister",
    "BoundAttention",
    "EncoderArgs",
    "EncoderFactory",
    "EncoderRegister",
    "HeadArgs",
    "HeadFactory",
    "HeadRegister",
    "ImporterFactory",
    "ImporterRegister",
    "TaskFactory",
    "TaskRegister",
]
