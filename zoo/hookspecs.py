"""The plugin contract. Each hook receives a ``register(name, factory, **metadata)`` callback.

``factory`` is a callable or a lazy ``"module:attr"`` import path; metadata is ``description``,
``aliases``, ``capabilities`` and, for heads, ``task``. Call contracts for each kind: docs/plugins.md;
their types (the ``register`` Protocols and the factories they take): zoo/types.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .types import (
        AdapterRegister,
        AttentionRegister,
        EncoderRegister,
        HeadRegister,
        ImporterRegister,
        TaskRegister,
    )

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def register_attention(register: AttentionRegister) -> None:
    """Register attention variants: factory(*, d_model, num_heads, dropout, **options) -> nn.Module."""


@hookspec
def register_encoders(register: EncoderRegister) -> None:
    """Register encoder architectures: factory(*, attention, vocab_size, d_model, ...) -> nn.Module."""


@hookspec
def register_heads(register: HeadRegister) -> None:
    """Register task heads: factory(*, d_model, num_labels, dropout, **options) -> nn.Module; task=..."""


@hookspec
def register_tasks(register: TaskRegister) -> None:
    """Register tasks: factory(**options) -> zoo.tasks.Task (labels, batches, metrics, predictions)."""


@hookspec
def register_importers(register: ImporterRegister) -> None:
    """Register checkpoint importers by Hugging Face model_type: factory(checkpoint) -> zoo.hf.EncoderImport."""


@hookspec
def register_adapters(register: AdapterRegister) -> None:
    """Register adapters (parameter-efficient fine-tuning): factory(*, encoder, **options) changes it in place."""
