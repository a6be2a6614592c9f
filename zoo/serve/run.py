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

    import os

    sys.setswitchinterval(float(os.environ.get("ZOO_SWITCH", "0.005")))
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
