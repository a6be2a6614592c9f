"""The Starlette application: text-embeddings-inference's routes over a :class:`Batcher`. Route families are
functions ``(service) -> [routes]`` listed in :data:`ROUTES`; a new family (``rerank``) adds one there.

Every answer is JSON; an error is ``{"error", "error_type"}`` with TEI's status codes (400 empty input, 401
bad or missing key, 413 body over --payload-limit, 422 validation, 424 inference failure, 429 overloaded,
503 not ready). Predictions come from the export's task object, exactly as ``zoo predict --json`` words them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from zoo.constants import VERSION
from zoo.windows import setting

from .openapi import ApiRoute, page, schema
from .rerank import rerank_routes
from .service import ApiError, ServeConfig, Service, endpoint, error_response, flag, inputs_table, read_body

__all__ = ["ROUTES", "ServeConfig", "build_app", "core_routes"]


# ---- the bodies' JSON schemas (for /openapi.json) ---------------------------------------------------------

TEXTS = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
PAIRS = {
    "type": "array",
    "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
}
TRUNCATE = {"type": "boolean", "default": False, "description": "cut inputs over the model's maximum length"}


def body_schema(inputs: dict[str, Any], **flags: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["inputs"], "properties": {"inputs": inputs, **flags}}


PREDICT_BODY = body_schema(
    {"oneOf": [*TEXTS["oneOf"], PAIRS]},
    raw_scores={"type": "boolean", "default": False, "description": "the model's outputs, not probabilities"},
    truncate=TRUNCATE,
)
EMBED_BODY = body_schema(TEXTS, normalize={"type": "boolean", "default": True}, truncate=TRUNCATE)
TOKENIZE_BODY = body_schema(TEXTS, add_special_tokens={"type": "boolean", "default": True})


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


# ---- handlers -----------------------------------------------------------------------------------------


async def health(service: Service, request: Request) -> Response:
    return Response(status_code=200)


async def predict(service: Service, request: Request) -> Response:
    config = service.config
    with service.batcher.admit():
        data = await read_body(request, config.payload_limit)
        table, single = inputs_table(data, config.max_client_batch_size)
        raw, truncate = flag(data, "raw_scores", False), flag(data, "truncate", False)
        p = service.predictor
        names = list(p.labels or []) or None
        top_k = len(names) if p.task.uses_top_k and names else 1
        results, outputs = await service.predict(table, truncate, top_k, request)
        answer = [scores(r, o, names, raw) for r, o in zip(results, outputs)]
        return JSONResponse(answer[0] if single else answer)


async def embed(service: Service, request: Request) -> Response:
    config = service.config
    with service.batcher.admit():
        data = await read_body(request, config.payload_limit)
        if not service.embeds:
            raise ApiError(
                422,
                "validation",
                f"this export's task '{service.predictor.task.name}' gives no embeddings; POST /predict instead",
            )
        table, _ = inputs_table(data, config.max_client_batch_size, pairs_allowed=False)
        normalize, truncate = flag(data, "normalize", True), flag(data, "truncate", False)
        results, _ = await service.predict(table, truncate, request=request)
        vectors = []
        for r in results:
            v = np.asarray(r["embedding"], dtype=np.float64)
            if normalize:
                v = v / max(float(np.linalg.norm(v)), 1e-12)
            vectors.append([float(x) for x in v])
        return JSONResponse(vectors)


async def tokenize(service: Service, request: Request) -> Response:
    config = service.config
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


async def info(service: Service, request: Request) -> Response:
    config, p = service.config, service.predictor
    manifest = getattr(p, "manifest", {}) or {}
    long_text = setting(p)  # a model that reads long texts in windows takes inputs of any length
    return JSONResponse(
        {
            "model_id": str(Path(config.model).resolve()),
            "version": VERSION,
            "model_file": str(getattr(p, "path", "")) or None,
            "task": p.task.name,
            "labels": p.labels,
            "embeds": service.embeds,
            "max_input_length": None if long_text.windowed else p.max_length,
            "window_length": p.max_length if long_text.windowed else None,
            "long_text": long_text.record(),
            "max_batch_tokens": config.max_batch_tokens,
            "max_batch_requests": config.max_batch_requests,
            "max_batch_delay_ms": config.max_batch_delay_ms,
            "max_batch_padding": config.max_batch_padding,
            "batch_workers": config.batch_workers,
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


async def metrics(service: Service, request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def openapi(service: Service, request: Request) -> Response:
    return JSONResponse(schema(request.app.routes, "zoo serve", VERSION))


async def docs(service: Service, request: Request) -> Response:
    return HTMLResponse(page(schema(request.app.routes, "zoo serve", VERSION)))


# ---- the application ----------------------------------------------------------------------------------


def core_routes(service: Service) -> list[ApiRoute]:
    """TEI's routes for every export (/rerank and any other route family add a function to ROUTES)."""
    return [
        endpoint(
            service, "/health", health, "GET", summary="200 once the model is warm, else 503", auth=False
        ),
        endpoint(service, "/info", info, "GET", summary="The model, its task and labels, and the limits"),
        endpoint(service, "/metrics", metrics, "GET", summary="Prometheus metrics", needs_model=False),
        endpoint(service, "/predict", predict, "POST", summary="Scores per label", body=PREDICT_BODY),
        endpoint(service, "/embed", embed, "POST", summary="One vector per input", body=EMBED_BODY),
        endpoint(
            service, "/tokenize", tokenize, "POST", summary="The tokens of each input", body=TOKENIZE_BODY
        ),
        endpoint(
            service, "/openapi.json", openapi, "GET", summary="This API as OpenAPI 3.1", needs_model=False
        ),
        endpoint(service, "/docs", docs, "GET", summary="This API as a page", needs_model=False),
    ]


# Each function gives the routes of one family; build_app mounts them all, in this order.
ROUTES: list[Callable[[Service], list[ApiRoute]]] = [core_routes, rerank_routes]


async def http_error(request: Request, exc: HTTPException) -> Response:
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "validation")
    return error_response(exc.status_code, kind, str(exc.detail))


def lifespan(service: Service, on_failure: Callable[[str], None]):
    """Load the model in the background once the server is up; on shutdown, finish the batches in flight."""

    @asynccontextmanager
    async def run(app: Starlette):
        task = asyncio.get_running_loop().create_task(service.load(on_failure))
        yield
        task.cancel()
        if service.batcher is not None:
            await service.batcher.stop()

    return run


def build_app(config: ServeConfig, on_failure: Callable[[str], None] = lambda message: None) -> Starlette:
    service = Service(config)
    routes = [route for family in ROUTES for route in family(service)]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan(service, on_failure),
    )
    app.state.service = service
    return app
