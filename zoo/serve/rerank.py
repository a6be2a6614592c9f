"""``POST /rerank``: text-embeddings-inference's rerank route, for an export of a rerank model.

Request ``{"query": str, "texts": [str], "return_text": false, "raw_scores": false, "truncate": false}``;
answer ``[{"index": i, "score": s(, "text": t)}, ...]`` best first, the score the sigmoid of the model's
logit (the logit with ``raw_scores``). The (query, text) pairs go through the same batcher as ``/predict``.
Errors as TEI words them: 422 for a malformed body or another task's export, 400 for an empty query or
text. A route family (``rerank_routes``) listed in ``zoo.serve.app.ROUTES``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from zoo.rerank import TASK, pairs_table, ranked

from .openapi import ApiRoute
from .service import ApiError, Service, endpoint, flag, read_body

RERANK_BODY = {
    "type": "object",
    "required": ["query", "texts"],
    "properties": {
        "query": {"type": "string"},
        "texts": {"type": "array", "items": {"type": "string"}},
        "raw_scores": {"type": "boolean", "default": False, "description": "the logits, not sigmoid scores"},
        "return_text": {"type": "boolean", "default": False, "description": "put each text in the answer"},
        "truncate": {"type": "boolean", "default": False, "description": "cut pairs over the maximum length"},
    },
}


def check_request(data: dict[str, Any], max_batch: int) -> tuple[str, list[str]]:
    """The query and texts of a /rerank body; an ApiError for anything else."""
    for field in ("query", "texts"):
        if field not in data:
            raise ApiError(422, "validation", f"missing field '{field}'")
    query, texts = data["query"], data["texts"]
    if not isinstance(query, str):
        raise ApiError(422, "validation", "'query' must be a string")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ApiError(422, "validation", "'texts' must be a list of strings")
    if not texts:
        raise ApiError(400, "empty", "'texts' cannot be empty")
    if len(texts) > max_batch:
        raise ApiError(422, "validation", f"batch size {len(texts)} > maximum allowed batch size {max_batch}")
    if not query.strip() or any(not t.strip() for t in texts):
        raise ApiError(400, "empty", "'query' and 'texts' cannot hold an empty text")
    return query, texts


async def rerank(service: Service, request: Request) -> Response:
    config = service.config
    with service.batcher.admit():
        data = await read_body(request, config.payload_limit)
        if service.predictor.task.name != TASK:
            raise ApiError(
                422,
                "validation",
                f"this export's task '{service.predictor.task.name}' does not score (query, text) pairs; "
                "POST /predict instead",
            )
        query, texts = check_request(data, config.max_client_batch_size)
        raw, truncate = flag(data, "raw_scores", False), flag(data, "truncate", False)
        return_text = flag(data, "return_text", False)
        _, outputs = await service.predict(pairs_table(query, texts), truncate, request=request)
        return JSONResponse(ranked(outputs, texts if return_text else None, raw))


def rerank_routes(service: Service) -> list[ApiRoute]:
    return [
        endpoint(
            service,
            "/rerank",
            rerank,
            "POST",
            summary="Texts ranked by relevance to a query",
            body=RERANK_BODY,
        )
    ]
