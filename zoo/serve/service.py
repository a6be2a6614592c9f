"""What every route shares: the loaded model behind its batcher (:class:`Service`), TEI's JSON errors
(:class:`ApiError`), request parsing, and :func:`endpoint`, which wraps a handler in the API key and readiness
checks, the error answers and the metrics. A family of routes (``app.core_routes``, ``rerank``) builds its
routes with :func:`endpoint` and is listed in ``app.ROUTES``."""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from zoo.data import Table
from zoo.errors import ZooError
from zoo.tokenizer import ids_of, pad_id
from zoo.windows import Plan, setting
from zoo.windows import encode as encode_windows

from .batcher import Batcher, InferenceFailed, Overloaded
from .metrics import Metrics
from .openapi import ApiRoute

T = TypeVar("T")


@dataclass
class ServeConfig:
    model: str
    api_key: str | None = None
    max_batch_tokens: int = 16384
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 32
    payload_limit: int = 2_000_000
    threads: int | None = None
    max_batch_requests: int | None = None  # rows per batch; None: only the token budget bounds a batch
    max_batch_delay_ms: float = 0.0  # how long a batch that is not full may wait for more rows
    max_batch_padding: float | None = 0.25  # padded tokens over real ones a batch may add; None: no bound
    batch_workers: int | None = None  # batches run at once; None: --threads (default: physical cores)
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
        self.solo: Any = None  # the export on every thread, for a batch that is all the work (a lone client)
        self.batcher: Batcher | None = None
        self.embeds = False  # whether the task's predictions carry an "embedding"

    # ---- loading ----------------------------------------------------------------------------------
    def _load(self) -> None:
        from zoo.export.runtime import OnnxModel, physical_cores
        from zoo.inference import load_predictor
        from zoo.threads import use

        # --threads (default: the usable physical cores) shared among the workers, each batch on its own
        # share: batches of short texts keep one core busy each, so W workers beat one call on W threads
        cores = self.config.threads or physical_cores()
        self.config.batch_workers = self.config.batch_workers or cores
        share = max(1, cores // self.config.batch_workers)
        use(share)
        predictor = load_predictor(self.config.model)
        if predictor.tokenizer is None:
            raise ZooError(f"{self.config.model}: the export has no tokenizer.json")
        self.predictor = predictor
        # a lone request on every core, its threads spinning between operators only while it runs: a tweet on
        # 2 cores, p50 fp32 8.9 -> 5.2 ms, int8 3.9 -> 2.8 ms (sleeping threads: 5.7 and 3.5 ms)
        if isinstance(predictor, OnnxModel) and cores > share:
            self.solo = OnnxModel(predictor.path, threads=cores, spinning=True, warn=False)

    async def load(self, on_failure: Callable[[str], None]) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._load)
            p = self.predictor
            if self.config.max_batch_requests is None and rows_interact(p):
                self.config.max_batch_requests = 1  # a row's answer must not depend on its batch
            self.batcher = Batcher(
                p.logits,
                pad_value=pad_id(p.tokenizer),
                max_batch_tokens=self.config.max_batch_tokens,
                max_concurrent=self.config.max_concurrent_requests,
                max_batch_requests=self.config.max_batch_requests,
                max_batch_delay_s=self.config.max_batch_delay_ms / 1000,
                max_padding=self.config.max_batch_padding,
                workers=self.config.batch_workers or 1,  # set by _load
                metrics=self.metrics,
                delay_s=self.config.batch_delay_s,
                run_alone=self.solo.logits if self.solo is not None else None,
            )
            self.batcher.start()
            if self.solo is not None:  # the warm-up request below runs alone, on solo: warm the workers' too
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: p.logits(*p.encode(["warm up"]))
                )
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
        self, table: Table, truncate: bool, top_k: int = 1, request: Request | None = None
    ) -> tuple[list[dict], list[np.ndarray]]:
        """(the task's prediction per row, the model's output per row). If the client of ``request`` goes
        away first, its rows leave the queue uncomputed and the answer is 499 (which nobody reads)."""
        encodings, plan = self.encode(table, truncate)
        try:
            ids = plan.ids if plan else ids_of(encodings)
            outputs = await unless_disconnected(request, self.batcher.enqueue(ids))
        except InferenceFailed as exc:
            raise ApiError(424, "backend", str(exc)) from None
        p = self.predictor
        if plan is not None:  # one output per text, combined from its windows
            outputs = plan.combine(p.task, outputs, setting(p).how)
        return p.task.predict(table, encodings, outputs, list(p.labels or []) or None, top_k), outputs


def rows_interact(predictor: Any) -> bool:
    """Whether one row's outputs depend on the other rows of its batch: an int8 file whose activations are
    quantised at run time ("dynamic", and "per-token", whose other MatMuls are dynamic): onnxruntime's
    DynamicQuantizeLinear takes one scale per tensor, over every row and the padding, so a batched row's label
    could differ from `zoo predict` on the text alone. Such a file is served a row per batch; a static int8
    file (fixed scales) and fp32 are not."""
    int8 = (getattr(predictor, "manifest", None) or {}).get("int8")
    path = getattr(predictor, "path", None)
    return (
        isinstance(int8, dict)
        and path is not None
        and int8.get("file") == Path(path).name
        and not str(int8.get("method", "")).startswith("static")
    )


async def unless_disconnected(request: Request | None, work: Awaitable[T]) -> T:
    """``work``'s result, or ApiError 499 with ``work`` cancelled as soon as the client disconnects. ``work``
    may be a future (the batcher's: no task is made for it)."""
    if request is None:
        return await work
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the handler itself was cancelled
        task.cancel()
        raise
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        raise ApiError(499, "client_closed", "the client closed the connection before its answer")
    return task.result()


async def disconnected(request: Request) -> None:
    """Return once the ASGI server reports that the client went away (the body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


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


# ---- endpoints: auth, readiness, errors and metrics around a handler ------------------------------------

Handler = Callable[[Service, Request], Awaitable[Response]]


def endpoint(
    service: Service,
    path: str,
    handler: Handler,
    method: str,
    *,
    summary: str,
    body: dict[str, Any] | None = None,
    auth: bool = True,
    needs_model: bool = True,
) -> ApiRoute:
    """A route whose handler runs behind the API key and readiness checks, answers every failure as TEI's
    JSON error, and is counted in /metrics. ``summary`` and ``body`` (a JSON schema) describe it in
    /openapi.json."""

    async def run(request: Request) -> Response:
        started = time.perf_counter()
        try:
            check_access(service, request, auth=auth, needs_model=needs_model)
            response = await handler(service, request)
        except Exception as exc:
            response = failure_response(exc)
        service.metrics.requests.labels(path, str(response.status_code)).inc()
        service.metrics.duration.labels(path).observe(time.perf_counter() - started)
        return response

    return ApiRoute(path, run, method=method, summary=summary, body=body, auth=auth)


def check_access(service: Service, request: Request, *, auth: bool, needs_model: bool) -> None:
    key = service.config.api_key
    if auth and key and not authorized(request, key):
        raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <key>' header is required")
    if needs_model and not service.ready:
        raise ApiError(503, "unhealthy", service.failure or "the model is still loading")


def failure_response(exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.error_type, str(exc))
    if isinstance(exc, Overloaded):
        return error_response(429, "overloaded", str(exc))
    if isinstance(exc, ClientDisconnect):  # gone while sending its body
        return error_response(499, "client_closed", "the client closed the connection")
    # a bug of ours: logged with its traceback, answered without it
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return error_response(500, "backend", f"internal error: {type(exc).__name__}")


def authorized(request: Request, key: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())
