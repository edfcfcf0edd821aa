"""``GET /docs``: Swagger UI served from this server's own files, so the docs work offline.

FastAPI's default ``/docs`` page loads Swagger UI from a CDN; here the script, stylesheet and
favicon come from the ``swagger-ui-bundle-v2`` package (import name ``swagger_ui_bundle``; Swagger UI 5,
which reads the OpenAPI 3.1 documents FastAPI writes) under ``/static/swagger/``. The page's one inline script
(Swagger UI's set-up) is allowed by its hash in the page's own Content-Security-Policy; no other inline script runs.
When API keys are on, the document declares the Bearer scheme so "Authorize" in the page sends the key. The form field
``model`` of analyze and evaluate is documented as an ``enum`` of the served models' names (:func:`served_names`); the
form itself takes any string, so an unknown name still gets 422 ``unknown_model`` naming the served ones.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.error_codes import ErrorCode
from app.io.bundle import resolve_bundle_dir
from app.io.card import BundleError
from app.io.ensemble import ensemble_card_at
from app.io.user_model import folder_card
from app.web.api_paths import API_PREFIX
from app.web.errors import ApiError
from app.web.forms import AnalyzeForm, EvaluateForm
from app.web.schemas.page_config import PageConfig
from app.web.security import content_security_policy
from app.web.settings import env_name

SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)
ASSET_PREFIX = "/static/swagger"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
# Swagger UI would otherwise send the spec to an online validator for a badge.
SWAGGER_PARAMETERS = {"validatorUrl": None}
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
BEARER_SCHEME = "apiKey"
REF_TEMPLATE = "#/components/schemas/{model}"
# Models of the contract that no route answers with: the page's configuration, embedded in the page (GET /).
COMPONENT_MODELS: tuple[type[BaseModel], ...] = (PageConfig,)
# Forms whose `model` field lists the served models.
MODEL_FORMS: tuple[type[BaseModel], ...] = (AnalyzeForm, EvaluateForm)


def inline_script_csp(html: str) -> str:
    """A Content-Security-Policy for ``html`` that allows exactly its inline ``<script>`` blocks, by SHA-256 hash."""
    hashes = [base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() for body in INLINE_SCRIPT.findall(html)]
    return content_security_policy(" ".join(["'self'", *(f"'sha256-{h}'" for h in hashes)]))


def card_name(source: str) -> str:
    """The name of the model a ``SEGU_MODELS`` entry serves, read from its card without loading it.

    Raises:
        app.io.card.BundleError: no bundle there, or a card that does not validate.
    """
    folder = resolve_bundle_dir(source)
    ensemble = ensemble_card_at(folder)
    return ensemble.name if ensemble is not None else folder_card(folder)[0].name


def served_names(app: FastAPI) -> list[str] | None:
    """The names of the models ``app`` serves, the default first: the loaded ones once the app has started, else those of the
    cards its settings name; ``None`` when a card cannot be read (the server will not start with it either)."""
    services = getattr(app.state, "services", None)
    if services is not None:
        return list(services.names)
    try:
        return [card_name(source) for source in app.state.settings.model_sources]
    except (BundleError, OSError):
        return None


class DocumentedApp(FastAPI):
    """The app: FastAPI whose OpenAPI document also holds :data:`COMPONENT_MODELS`, the served models' names as the ``model``
    field's ``enum`` and, once :func:`declare_bearer_keys` is called, the Bearer scheme."""

    bearer_keys: bool = False

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document, built once; with :attr:`bearer_keys`, every API operation needs the Bearer key."""
        fresh = self.openapi_schema is None
        schema = super().openapi()
        if fresh:
            _add_components(schema, COMPONENT_MODELS)
            names = served_names(self)
            if names:
                _list_models(schema, names)
            if self.bearer_keys:
                _declare_bearer(schema)
        return schema


def _add_components(schema: dict[str, Any], models: Sequence[type[BaseModel]]) -> None:
    """Add ``models`` (and the models they use) to ``schema``'s component schemas, as their JSON is serialised."""
    _, defs = models_json_schema([(model, "serialization") for model in models], ref_template=REF_TEMPLATE)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in defs.get("$defs", {}).items():
        if schemas.setdefault(name, definition) != definition:
            raise ValueError(f"two component schemas are named {name}; rename one of the models")


def _list_models(schema: dict[str, Any], names: list[str]) -> None:
    """Make the ``model`` field of every form in :data:`MODEL_FORMS` an ``enum`` of ``names`` (or null: the default)."""
    for form in MODEL_FORMS:
        field = schema["components"]["schemas"][form.__name__]["properties"]["model"]
        field["anyOf"] = [{"type": "string", "enum": names}, {"type": "null"}]


def _declare_bearer(schema: dict[str, Any]) -> None:
    description = f"One of the server's API keys ({env_name('api_keys')}), sent as `Authorization: Bearer <key>`."
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER_SCHEME] = {"type": "http", "scheme": "bearer", "description": description}
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(f"{API_PREFIX}/"):
            for operation in operations.values():
                operation["security"] = [{BEARER_SCHEME: []}]


def declare_bearer_keys(app: DocumentedApp) -> None:
    """Make ``app``'s OpenAPI document say every API operation needs ``Authorization: Bearer <key>``."""
    app.bearer_keys = True
    app.openapi_schema = None


# The docs page and its assets; included before ``/static`` is mounted, which would shadow ``/static/swagger/``.
router = APIRouter(include_in_schema=False)


@router.get(f"{ASSET_PREFIX}/{{name}}")
async def swagger_asset(name: str) -> FileResponse:
    """One of Swagger UI's files, from the installed package."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"no such Swagger UI file: {name}; the docs use {', '.join(sorted(ASSETS))}")
    return FileResponse(SWAGGER_DIR / name, media_type=media_type)


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI showing the serving app's OpenAPI document."""
    app: FastAPI = request.app
    root = str(request.scope.get("root_path", "")).rstrip("/")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} – API docs",
        swagger_js_url=f"{root}{ASSET_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSET_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSET_PREFIX}/favicon-32x32.png",
        swagger_ui_parameters=SWAGGER_PARAMETERS,
    )
    page.headers["Content-Security-Policy"] = inline_script_csp(bytes(page.body).decode())
    return page
