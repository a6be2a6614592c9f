"""The plugin contract. Each hook receives a ``register(name, factory, **metadata)`` callback.

``factory`` is a callable or a lazy ``"module:attr"`` import path; metadata is ``description``,
``aliases`` and ``capabilities``. Call contracts for each kind of factory: docs/plugins.md.
"""
import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def register_attention(register):
    """Register attention variants: factory(*, d_model, num_heads, dropout, **options) -> nn.Module."""


@hookspec
def register_encoders(register):
    """Register encoder architectures: factory(*, attention, vocab_size, d_model, ...) -> nn.Module."""


@hookspec
def register_heads(register):
    """Register task heads: factory(*, d_model, num_labels, dropout, **options) -> nn.Module."""
