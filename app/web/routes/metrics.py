"""``GET /metrics``: the app's Prometheus metrics (:mod:`app.web.metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.web.metrics import CONTENT_TYPE, Metrics

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."}})
async def metrics(request: Request) -> Response:
    """Request counts and latencies by route, errors by code, queue depth, batch sizes, inference time, pixels and MC samples.

    Needs the API key when the server has keys (SEGU_API_KEYS); off with SEGU_METRICS=false.
    """
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE)
