"""``GET /docs``: Swagger UI served from this server's own files, so the docs work offline.

FastAPI's default ``/docs`` page loads Swagger UI from a CDN; here the script, stylesheet and
favicon come from the ``swagger-ui-bundle-v2`` package (import name ``swagger_ui_bundle``; Swagger UI 5,
which reads the OpenAPI 3.1 documents FastAPI writes) under ``/static/swagger/``.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from app.web.errors import ApiError

SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)
ASSET_PREFIX = "/static/swagger"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
# Swagger UI would otherwise send the spec to an online validator for a badge.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def build_router(app: FastAPI) -> APIRouter:
    """The docs page and its assets; include it before ``/static`` is mounted.

    Args:
        app: The app whose OpenAPI document the page shows.
    """
    router = APIRouter(include_in_schema=False)

    @router.get(f"{ASSET_PREFIX}/{{name}}")
    async def swagger_asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise ApiError(404, "not_found", f"no such Swagger UI file: {name}; the docs use {', '.join(sorted(ASSETS))}")
        return FileResponse(SWAGGER_DIR / name, media_type=media_type)

    @router.get("/docs", response_class=HTMLResponse)
    async def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} – API docs",
            swagger_js_url=f"{root}{ASSET_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSET_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSET_PREFIX}/favicon-32x32.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    return router
