"""``zoo serve``: an HTTP server for an export (onnxruntime + tokenizers, no torch) that speaks
text-embeddings-inference's API. ``batcher`` groups the rows of many requests into padded batches and runs
them in one worker thread; ``app`` is the Starlette application (routes, errors, auth, metrics); ``run``
starts uvicorn with a graceful SIGTERM. The ASGI stack is the optional ``serve`` extra."""

from __future__ import annotations

from zoo.errors import ZooError

EXTRA_MODULES = ("uvicorn", "starlette", "prometheus_client")


def require_extra() -> None:
    """One clear line when the ``serve`` extra is not installed."""
    import importlib

    missing = []
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name.replace("_", "-"))
    if missing:
        raise ZooError(
            f"zoo serve needs the serve extra ({', '.join(missing)} missing): pip install 'zoo[serve]'"
        )
