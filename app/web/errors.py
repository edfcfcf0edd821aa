"""One error shape for every failure: ``{"error": {"code": ..., "message": ...}}``, its code an :class:`~app.error_codes.ErrorCode`.

Also the two things generated from the codes: the ``responses=`` entries of a route's OpenAPI operation
(:func:`error_responses`) and the documentation's table of every code (:func:`error_table_markdown`).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.error_codes import ErrorCode
from app.io.decoding import ImageDecodeError
from app.io.masks import MaskError
from app.web.api_paths import API_PREFIX
from app.web.schemas.analysis import ErrorResponse

__all__ = [
    "PROTOCOL_CODES",
    "ApiError",
    "ErrorCode",
    "error_body",
    "error_response",
    "error_responses",
    "error_table_markdown",
    "install_error_handlers",
    "protocol_responses",
]

PROTOCOL_CODES = (ErrorCode.BAD_REQUEST, ErrorCode.HEADER_TOO_LARGE)

log = logging.getLogger("app.web")


class ApiError(Exception):
    """An error the API reports as is, with its code's HTTP status.

    Call it as ``ApiError(ErrorCode.NOT_READY, "the models are still loading", field=None)``.

    Args:
        code: The error's code; the answer's status is ``code.status``.
        message: What went wrong and how to fix it, in words.
        field: The request field at fault, if any.
    """

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = code.status
        self.message = message
        self.field = field


def error_body(code: str, message: str, field: str | None = None) -> dict[str, dict[str, str]]:
    """The JSON body of an error response."""
    error = {"code": str(code), "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def error_response(code: ErrorCode, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response in the common shape, with ``code``'s status."""
    return JSONResponse(error_body(code, message, field), status_code=code.status, headers=headers)


def error_responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of a route that may answer with ``codes``: one per status, describing its codes.

    Example: ``@router.post(..., responses=error_responses(ErrorCode.TOO_MANY_PIXELS, ErrorCode.NOT_READY))``.
    """
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        by_status.setdefault(code.status, []).append(code)
    return {
        status: {"model": ErrorResponse, "description": " ".join(f"`{code}`: {code.description}" for code in members)}
        for status, members in sorted(by_status.items())
    }


def protocol_responses() -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of the errors the HTTP layer itself may answer to any request (:data:`PROTOCOL_CODES`, :mod:`app.web.protocol`)."""
    return error_responses(*PROTOCOL_CODES)


def error_table_markdown() -> str:
    """The Markdown table of every error code (code | status | meaning), for the documentation."""
    rows = [f"| `{code}` | {code.status} | {code.description} |" for code in sorted(ErrorCode, key=lambda c: (c.status, c.value))]
    return "\n".join(["| code | status | meaning |", "|---|---|---|", *rows]) + "\n"


def _http_code(status: int) -> str:
    """The code of a Starlette HTTP error without one: its status phrase in snake case (404: ``not_found``)."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


def _field_name(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie", "form")]
    return ".".join(parts) or "(request)"


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.code, exc.message, exc.field)


async def _decode_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageDecodeError)
    return error_response(exc.code, exc.message, "file")


async def _mask_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MaskError)
    return error_response(exc.code, exc.message, "mask")


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if not errors:
        return error_response(ErrorCode.VALIDATION_ERROR, "the request is not valid")
    fields = [_field_name(e.get("loc", ())) for e in errors]
    message = "; ".join(f"{f}: {e.get('msg', 'invalid value')}" for f, e in zip(fields, errors, strict=True))
    return error_response(ErrorCode.VALIDATION_ERROR, message, fields[0])


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "code", None) or _http_code(exc.status_code)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and message == HTTPStatus.NOT_FOUND.phrase:
        message = f"no such page or endpoint; the API lives under {API_PREFIX} (see /docs)"
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(ErrorCode.INTERNAL_ERROR, "an unexpected error occurred on the server; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the common error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ImageDecodeError, _decode_error)
    app.add_exception_handler(MaskError, _mask_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
