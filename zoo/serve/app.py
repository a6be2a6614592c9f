"""The Starlette application: text-embeddings-inference's routes over a :class:`Batcher`.

Every answer is JSON; an error is ``{"error", "error_type"}`` with TEI's status codes (400 empty input, 401
bad or missing key, 413 body over --payload-limit, 422 validation, 424 inference failure, 429 overloaded,
503 not ready). Predictions come from the export's task object, exactly as ``zoo predict --json`` words them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from zoo.constants import VERSION
from zoo.data import Table
from zoo.errors import ZooError
from zoo.tokenizer import ids_of, pad_id
from zoo.windows import Plan, setting
from zoo.windows import encode as encode_windows

from .batcher import Batcher, InferenceFailed, Overloaded
from .metrics import Metrics


@dataclass
class ServeConfig:
    model: str
    api_key: str | None = None
    max_batch_tokens: int = 16384
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 32
    payload_limit: int = 2_000_000
    threads: int | None = None
    batch_delay_s: float = 0.0  # added to every batch: for tests of backpressure and shutdown


class ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status, self.error_type = status, error_type


def error_response(status: int, error_type: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


class Service:
    """The loaded model, its batcher and metrics; ``ready`` once loaded and warmed up."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.metrics = Metrics()
        self.ready = False
        self.failure: str | None = None  # why loading failed
        self.predictor: Any = None
        self.batcher: Batcher | None = None
        self.embeds = False  # whether the task's predictions carry an "embedding"

    # ---- loading ----------------------------------------------------------------------------------
    def _load(self) -> None:
        from zoo.inference import load_predictor
        from zoo.threads import use

        use(self.config.threads)
        predictor = load_predictor(self.config.model)
        if predictor.tokenizer is None:
            raise ZooError(f"{self.config.model}: the export has no tokenizer.json")
        self.predictor = predictor

    async def load(self, on_failure: Callable[[str], None]) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._load)
            p = self.predictor
            self.batcher = Batcher(
                p.logits,
                pad_value=pad_id(p.tokenizer),
                max_batch_tokens=self.config.max_batch_tokens,
                max_concurrent=self.config.max_concurrent_requests,
                metrics=self.metrics,
                delay_s=self.config.batch_delay_s,
            )
            self.batcher.start()
            warm = await self.predict(Table("warm-up", ["warm up"], None, None, [1]), truncate=True)
            self.embeds = "embedding" in warm[0][0]
            self.ready = True
        except Exception as exc:  # a ZooError, or anything onnxruntime raised
            self.failure = str(exc) if isinstance(exc, ZooError) else f"{type(exc).__name__}: {exc}"
            on_failure(self.failure)

    # ---- the work of a request --------------------------------------------------------------------
    def encode(self, table: Table, truncate: bool) -> tuple[list, Plan | None]:
        """The task's encodings of a table (as `zoo predict` makes them) and, for a model that reads long
        texts in windows, their windows; else 422 for a row over max_length unless ``truncate``."""
        p = self.predictor
        limit = p.max_length
        if setting(p).windowed:  # as the model was trained: nothing is cut, so "truncate" has no say
            try:
                return encode_windows(p.task, p.tokenizer, table, limit, setting(p))
            except Exception as exc:
                raise ApiError(422, "tokenizer", f"cannot tokenize the input: {exc}") from None
        try:
            encodings = p.task.inputs(p.tokenizer, table, limit if truncate else limit + 1)
        except Exception as exc:
            raise ApiError(422, "tokenizer", f"cannot tokenize the input: {exc}") from None
        if not truncate:
            for i, e in enumerate(encodings):
                if len(e.ids) > limit:
                    where = "the input" if len(encodings) == 1 else f"input {i}"
                    raise ApiError(
                        422,
                        "validation",
                        f"{where} is longer than the model's maximum of {limit} tokens; "
                        'send "truncate": true to cut it',
                    )
        return encodings, None

    async def predict(
        self, table: Table, truncate: bool, top_k: int = 1
    ) -> tuple[list[dict], list[np.ndarray]]:
        """(the task's prediction per row, the model's output per row)."""
        encodings, plan = self.encode(table, truncate)
        try:
            outputs = await self.batcher.submit(plan.ids if plan else ids_of(encodings))
        except InferenceFailed as exc:
            raise ApiError(424, "backend", str(exc)) from None
        p = self.predictor
        if plan is not None:  # one output per text, combined from its windows
            outputs = plan.combine(p.task, outputs, setting(p).how)
        return p.task.predict(table, encodings, outputs, list(p.labels or []) or None, top_k), outputs


# ---- request parsing ------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> dict[str, Any]:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, "payload_too_large", f"the body has {length} bytes, over the limit of {limit}")
    body, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the body is over the limit of {limit} bytes")
        body.append(chunk)
    try:
        data = json.loads(b"".join(body) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, "validation", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "validation", 'the body must be a JSON object, e.g. {"inputs": "some text"}')
    return data


def flag(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(422, "validation", f"'{name}' must be true or false, got {value!r}")
    return value


def inputs_table(data: dict[str, Any], max_batch: int, pairs_allowed: bool = True) -> tuple[Table, bool]:
    """``inputs`` (str | [str] | [[str, str]]) as a Table, and whether it was one string."""
    if "inputs" not in data:
        raise ApiError(422, "validation", "missing field 'inputs'")
    inputs = data["inputs"]
    single = isinstance(inputs, str)
    rows = [inputs] if single else inputs
    if not isinstance(rows, list):
        raise ApiError(
            422, "validation", "'inputs' must be a string, a list of strings or a list of [text, pair]"
        )
    if not rows:
        raise ApiError(400, "empty", "'inputs' cannot be empty")
    if len(rows) > max_batch:
        raise ApiError(422, "validation", f"batch size {len(rows)} > maximum allowed batch size {max_batch}")
    if all(isinstance(r, str) for r in rows):
        texts, pairs = rows, None
    elif pairs_allowed and all(
        isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r) for r in rows
    ):
        texts, pairs = [r[0] for r in rows], [r[1] for r in rows]
    else:
        raise ApiError(
            422,
            "validation",
            "'inputs' must be a string, a list of strings"
            + (" or a list of [text, pair]" if pairs_allowed else ""),
        )
    if any(not t for t in texts) or any(not t for t in pairs or []):
        raise ApiError(400, "empty", "'inputs' cannot hold an empty text")
    return Table("request", list(texts), pairs, None, list(range(len(texts)))), single


# ---- routes ---------------------------------------------------------------------------------------


def scores(result: dict[str, Any], output: np.ndarray, names: list[str] | None, raw: bool) -> Any:
    """TEI's [{"label", "score"}] (best first) for a task whose prediction ranks labels (``top``), or the raw
    outputs per label with ``raw_scores``; any other task's prediction as `zoo predict --json` gives it."""
    if raw:
        if output.ndim != 1 or not names or len(output) != len(names):
            raise ApiError(422, "validation", "raw_scores needs a model with one output per label")
        ranked = [{"label": n, "score": float(v)} for n, v in zip(names, output)]
        return sorted(ranked, key=lambda x: -x["score"])
    if isinstance(result.get("top"), list):
        return [{"label": t["label"], "score": t["probability"]} for t in result["top"]]
    if "label" in result and "probability" in result:
        return [{"label": result["label"], "score": result["probability"]}]
    return {k: v for k, v in result.items() if k != "text"}


def build_app(config: ServeConfig, on_failure: Callable[[str], None] = lambda message: None) -> Starlette:
    service = Service(config)

    def endpoint(
        route: str,
        handler: Callable[[Request], Awaitable[Response]],
        *,
        auth: bool = True,
        needs_model: bool = True,
    ):
        async def run(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if auth and config.api_key and not authorized(request, config.api_key):
                    raise ApiError(
                        401, "unauthorized", "a valid 'Authorization: Bearer <key>' header is required"
                    )
                if needs_model and not service.ready:
                    raise ApiError(503, "unhealthy", service.failure or "the model is still loading")
                response = await handler(request)
            except ApiError as exc:
                response = error_response(exc.status, exc.error_type, str(exc))
            except Overloaded as exc:
                response = error_response(429, "overloaded", str(exc))
            except Exception as exc:  # a bug of ours: logged with its traceback, answered without it
                traceback.print_exc(file=sys.stderr)
                response = error_response(500, "backend", f"internal error: {type(exc).__name__}")
            service.metrics.requests.labels(route, str(response.status_code)).inc()
            service.metrics.duration.labels(route).observe(time.perf_counter() - started)
            return response

        return run

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def predict(request: Request) -> Response:
        with service.batcher.admit():
            data = await read_body(request, config.payload_limit)
            table, single = inputs_table(data, config.max_client_batch_size)
            raw, truncate = flag(data, "raw_scores", False), flag(data, "truncate", False)
            p = service.predictor
            names = list(p.labels or []) or None
            top_k = len(names) if p.task.uses_top_k and names else 1
            results, outputs = await service.predict(table, truncate, top_k)
            answer = [scores(r, o, names, raw) for r, o in zip(results, outputs)]
            return JSONResponse(answer[0] if single else answer)

    async def embed(request: Request) -> Response:
        with service.batcher.admit():
            data = await read_body(request, config.payload_limit)
            if not service.embeds:
                raise ApiError(
                    422,
                    "validation",
                    f"this export's task '{service.predictor.task.name}' gives no "
                    "embeddings; POST /predict instead",
                )
            table, _ = inputs_table(data, config.max_client_batch_size, pairs_allowed=False)
            normalize, truncate = flag(data, "normalize", True), flag(data, "truncate", False)
            results, _ = await service.predict(table, truncate)
            vectors = []
            for r in results:
                v = np.asarray(r["embedding"], dtype=np.float64)
                if normalize:
                    v = v / max(float(np.linalg.norm(v)), 1e-12)
                vectors.append([float(x) for x in v])
            return JSONResponse(vectors)

    async def tokenize(request: Request) -> Response:
        data = await read_body(request, config.payload_limit)
        table, _ = inputs_table(data, config.max_client_batch_size, pairs_allowed=False)
        special = flag(data, "add_special_tokens", True)
        tokenizer = service.predictor.tokenizer
        tokenizer.no_truncation()
        answer = []
        for text, e in zip(table.texts, tokenizer.encode_batch(table.texts, add_special_tokens=special)):
            answer.append(
                [
                    {
                        "id": i,
                        "text": token if s else text[a:b],
                        "special": bool(s),
                        "start": a if not s else None,
                        "stop": b if not s else None,
                    }
                    for i, token, s, (a, b) in zip(e.ids, e.tokens, e.special_tokens_mask, e.offsets)
                ]
            )
        return JSONResponse(answer)

    async def info(request: Request) -> Response:
        p = service.predictor
        manifest = getattr(p, "manifest", {}) or {}
        return JSONResponse(
            {
                "model_id": str(Path(config.model).resolve()),
                "version": VERSION,
                "model_file": str(getattr(p, "path", "")) or None,
                "task": p.task.name,
                "labels": p.labels,
                "embeds": service.embeds,
                "max_input_length": p.max_length,
                "max_batch_tokens": config.max_batch_tokens,
                "max_concurrent_requests": config.max_concurrent_requests,
                "max_client_batch_size": config.max_client_batch_size,
                "payload_limit": config.payload_limit,
                "manifest": {
                    k: manifest.get(k)
                    for k in ("task", "opset", "exporter", "serve", "parity_passed")
                    if k in manifest
                },
            }
        )

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "validation")
        return error_response(exc.status_code, kind, str(exc.detail))

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.get_running_loop().create_task(service.load(on_failure))
        yield
        task.cancel()
        if service.batcher is not None:
            await service.batcher.stop()

    routes = [
        Route("/health", endpoint("/health", health, auth=False), methods=["GET"]),
        Route("/info", endpoint("/info", info), methods=["GET"]),
        Route("/metrics", endpoint("/metrics", metrics, needs_model=False), methods=["GET"]),
        Route("/predict", endpoint("/predict", predict), methods=["POST"]),
        Route("/embed", endpoint("/embed", embed), methods=["POST"]),
        Route("/tokenize", endpoint("/tokenize", tokenize), methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.service = service
    return app


def authorized(request: Request, key: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())
