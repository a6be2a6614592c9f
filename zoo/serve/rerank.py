"""``POST /rerank``: text-embeddings-inference's rerank route for an export of a rerank model.

Request ``{"query": str, "texts": [str], "return_text": false, "raw_scores": false, "truncate": false}``;
answer ``[{"index": i, "score": s(, "text": t)}, ...]`` best first, the score the sigmoid of the
model's logit (the logit with ``raw_scores``). The (query, text) pairs go through the same batcher as
``/predict``. Errors as TEI words them: 422 for a malformed body or another task's export, 400 for an
empty query or text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from zoo.rerank import TASK, pairs_table, ranked


def check_request(data: dict[str, Any], max_batch: int) -> tuple[str, list[str]]:
    """The query and texts of a /rerank body; an ApiError for anything else."""
    from .app import ApiError

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


def rerank_handler(service) -> Callable[[Request], Awaitable[Response]]:
    """The route's handler over a loaded ``Service`` (zoo.serve.app), to mount with its ``endpoint``."""
    from .app import ApiError, flag, read_body

    async def rerank(request: Request) -> Response:
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
            _, outputs = await service.predict(pairs_table(query, texts), truncate)
            return JSONResponse(ranked(outputs, texts if return_text else None, raw))

    return rerank
