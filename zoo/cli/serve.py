"""``zoo serve``: an HTTP server for an export (text-embeddings-inference's API, dynamic batching)."""

from __future__ import annotations

import click

from .options import threads_option


@click.command()
@click.argument("model", type=click.Path())
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 for every interface)."
)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--api-key",
    envvar="ZOO_API_KEY",
    default=None,
    help="Require 'Authorization: Bearer KEY' on every route but /health [env: ZOO_API_KEY].",
)
@click.option(
    "--max-batch-tokens",
    type=click.IntRange(1),
    default=16384,
    show_default=True,
    help="Padded tokens per batch (longest row x rows).",
)
@click.option(
    "--max-batch-requests",
    type=click.IntRange(1),
    default=None,
    help="Rows per batch (and per window of rows sorted by length), at most [default: only --max-batch-tokens; "
    "1 for an int8 file quantised at run time, whose rows' answers depend on their batch].",
)
@click.option(
    "--max-batch-delay-ms",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="How long a batch that is not full may wait for more rows (0: it runs as soon as the model is free).",
)
@click.option(
    "--max-batch-padding",
    type=click.FloatRange(0),
    default=0.25,
    show_default=True,
    help="Padding a batch may add, as a fraction of its real tokens (rows of unlike length go in separate batches).",
)
@click.option(
    "--batch-workers",
    type=click.IntRange(1),
    default=None,
    help="Batches that run at once, each in its own thread, sharing the --threads onnxruntime threads "
    "[default: --threads, one thread per batch].",
)
@click.option(
    "--max-concurrent-requests",
    type=click.IntRange(1),
    default=512,
    show_default=True,
    help="Requests in the server at once; beyond it 429 at once.",
)
@click.option(
    "--max-client-batch-size",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Inputs in one request; beyond it 422.",
)
@click.option(
    "--payload-limit",
    type=click.IntRange(1),
    default=2_000_000,
    show_default=True,
    help="Bytes in a request body; beyond it 413.",
)
@click.option(
    "--batch-delay-s",
    type=click.FloatRange(0),
    default=0.0,
    hidden=True,
    help="Make every batch this much slower (tests of backpressure and shutdown).",
)
@threads_option
def serve(
    model,
    host,
    port,
    api_key,
    max_batch_tokens,
    max_batch_requests,
    max_batch_delay_ms,
    max_batch_padding,
    batch_workers,
    max_concurrent_requests,
    max_client_batch_size,
    payload_limit,
    batch_delay_s,
    threads,
):
    """Serve an export directory over HTTP: POST /predict, /embed, /tokenize; GET /health, /info, /metrics,
    /openapi.json, /docs."""
    from pathlib import Path

    from zoo.constants import CONFIG_NAME, ONNX_NAME
    from zoo.errors import ZooError
    from zoo.serve import require_extra

    require_extra()
    path = Path(model)
    if not ((path / ONNX_NAME).is_file() or (path / CONFIG_NAME).is_file()):
        raise ZooError(f"{model}: not an export or model directory (no {ONNX_NAME} or {CONFIG_NAME})")
    from zoo.serve.app import ServeConfig
    from zoo.serve.run import serve as run

    run(
        ServeConfig(
            model,
            api_key=api_key or None,
            max_batch_tokens=max_batch_tokens,
            max_batch_requests=max_batch_requests,
            max_batch_delay_ms=max_batch_delay_ms,
            max_batch_padding=max_batch_padding,
            batch_workers=batch_workers,
            max_concurrent_requests=max_concurrent_requests,
            max_client_batch_size=max_client_batch_size,
            payload_limit=payload_limit,
            threads=threads,
            batch_delay_s=batch_delay_s,
        ),
        host,
        port,
    )
