"""One error shape for every failure: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.io.decoding import ImageDecodeError
from app.io.masks import MaskError

log = logging.getLogger("app.web")

DECODE_STATUS = {"unsupported_media_type": 415, "corrupt_image": 422, "too_many_pixels": 413}
MASK_STATUS = {"unsupported_media_type": 415, "corrupt_mask": 422, "mask_not_single_channel": 422, "mask_size_mismatch": 422}


class ApiError(Exception):
    """An error the API reports as is.

    Args:
        status: HTTP status code.
        code: Stable machine-readable code, e.g. ``"not_ready"``.
        message: What went wrong and how to fix it, in words.
        field: The request field at fault, if any.
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error_body(code: str, message: str, field: str | None = None) -> dict[str, dict[str, str]]:
    """The JSON body of an error response."""
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def error_response(status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response in the common shape."""
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def _status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


def _field_name(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie", "form")]
    return ".".join(parts) or "(request)"


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.field)


async def _decode_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageDecodeError)
    return error_response(DECODE_STATUS.get(exc.code, 422), exc.code, exc.message, "file")


async def _mask_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MaskError)
    return error_response(MASK_STATUS.get(exc.code, 422), exc.code, exc.message, "mask")


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if not errors:
        return error_response(422, "validation_error", "the request is not valid")
    fields = [_field_name(e.get("loc", ())) for e in errors]
    message = "; ".join(f"{f}: {e.get('msg', 'invalid value')}" for f, e in zip(fields, errors, strict=True))
    return error_response(422, "validation_error", message, fields[0])


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "code", None) or _status_code_name(exc.status_code)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and message == HTTPStatus.NOT_FOUND.phrase:
        message = "no such page or endpoint; the API lives under /api/v1 (see /docs)"
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error occurred on the server; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the common error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ImageDecodeError, _decode_error)
    app.add_exception_handler(MaskError, _mask_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
