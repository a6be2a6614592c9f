"""Start uvicorn on an app: bind, load the model in the background (GET /health answers 503 until it is
warm), and on SIGTERM or Ctrl-C stop accepting, finish every accepted request, and return (exit 0)."""

from __future__ import annotations

import sys

import uvicorn

from zoo.errors import ZooError

from .app import ServeConfig, build_app

SWITCH_INTERVAL_S = 0.0002


class GracefulServer(uvicorn.Server):
    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises a captured signal once it has shut down, which would end the process as killed
        # by SIGTERM; a graceful shutdown is a success, so forget it.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    failures: list[str] = []
    server: GracefulServer | None = None

    def on_failure(message: str) -> None:
        failures.append(message)
        print(f"error: {message}", file=sys.stderr)
        if server is not None:
            server.should_exit = True

    # A worker thread whose batch is done needs the GIL back to hand its outputs over and take the next
    # batch; under load the event loop holds it, and CPython makes a waiting thread wait up to the switch
    # interval (5 ms, about as long as an int8 batch of one tweet takes) before the holder must let go.
    # At 64 clients zoo served 1.07-1.11x the tuned peer's requests/s with 0.2 ms, 0.58-0.80x with 5 ms
    # (bench/serve.py, int8, a row per batch, one thread per worker).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    app = build_app(config, on_failure)
    server = GracefulServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="info",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=None,
            server_header=False,
        )
    )
    print(
        f"zoo: serving {config.model} on http://{host}:{port} (GET /health is 200 once the model is warm)",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    if failures:
        raise ZooError(f"could not serve {config.model}: {failures[0]}")
