"""Every error code the API and the command line report, with its HTTP status and meaning, in one enum.

An error answer is ``{"error": {"code": ..., "message": ...}}``; its ``code`` is one of :class:`ErrorCode`'s values
and its HTTP status is that member's :attr:`~ErrorCode.status`. The OpenAPI descriptions of error responses
(:func:`app.web.errors.error_responses`) and the documentation's table of codes (:func:`app.web.errors.error_table_markdown`)
are generated from here, so a code is described once. The module lives at the core layer because decoding
(:mod:`app.io.decoding`, :mod:`app.io.masks`) raises with these codes too, and the I/O layer may not import the web layer.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ErrorCode"]


class ErrorCode(StrEnum):
    """A stable machine-readable error code; its value is what the error body's ``code`` says.

    Attributes:
        status: The HTTP status an answer with this code carries.
        description: What the code means and what helps, in one sentence of Markdown.
    """

    status: int
    description: str

    def __new__(cls, value: str, status: int, description: str) -> ErrorCode:
        """A member whose value is ``value``, answered with ``status`` and described by ``description``."""
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.description = description
        return member

    BAD_REQUEST = (
        "bad_request",
        400,
        "The request is malformed: conflicting or repeated framing headers (`Transfer-Encoding` with `Content-Length`, two of either), "
        "a `Content-Length` that is not a whole number, or a request line or header the HTTP parser cannot read; framing errors close the connection.",
    )
    INVALID_HOST = "invalid_host", 400, "The `Host` header names a host this server does not answer to (`SEGU_ALLOWED_HOSTS`)."
    UNAUTHORIZED = "unauthorized", 401, "No API key, or not one of the server's keys (`SEGU_API_KEYS`): send `Authorization: Bearer <key>`."
    FORBIDDEN_ORIGIN = "forbidden_origin", 403, "A write from a web page of another origin that CORS does not allow (`SEGU_CORS_ORIGINS`)."
    NOT_FOUND = "not_found", 404, "No such page, endpoint or map."
    ANALYSIS_NOT_FOUND = "analysis_not_found", 404, "The analysis id has expired or never existed; analyse the image again for a new id."
    JOB_NOT_FOUND = "job_not_found", 404, "The job id has expired (`SEGU_JOB_TTL_SECONDS`), was evicted or never existed; send the request again."
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "The endpoint exists but not for this HTTP method."
    JOB_NO_RESULT = "job_no_result", 409, "The job has no result (yet): it is queued or running (poll its status), or it was cancelled."
    BODY_TIMEOUT = "body_timeout", 408, "The request body did not arrive within `SEGU_BODY_TIMEOUT` seconds; the connection is closed."
    HEADER_TIMEOUT = "header_timeout", 408, "The request's headers did not arrive within `SEGU_HEADER_TIMEOUT` seconds; the connection is closed."
    BODY_TOO_LARGE = "body_too_large", 413, "The request body is over `SEGU_MAX_BODY_BYTES`."
    HEADER_TOO_LARGE = (
        "header_too_large",
        431,
        "The request line and headers are over `SEGU_MAX_HEADER_BYTES` bytes, whether they came in one piece or many; the connection is closed.",
    )
    TOO_MANY_PIXELS = "too_many_pixels", 413, "The image has more pixels than `SEGU_MAX_PIXELS`."
    TOO_MUCH_WORK = (
        "too_much_work",
        413,
        "Analysed pixels × passes × (samples + 1), plus the upload's estimated decoding cost in the same units, over "
        "`SEGU_MAX_JOB_WORK` (or analysed pixels over `SEGU_MAX_JOB_PIXELS`), or over `SEGU_MAX_WORK` with mode=sync; "
        "the message says what would fit.",
    )
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415, "The file is empty or not an image (or mask) in an accepted format."
    CORRUPT_IMAGE = (
        "corrupt_image",
        422,
        "The image's header or data cannot be read (a truncated file that starts like an accepted format included), "
        "its structure is beyond safe bounds (more than 64 JPEG scans, 65,536 TIFF strips, …), or it has no pixels.",
    )
    CORRUPT_MASK = "corrupt_mask", 422, "The mask file is corrupt or truncated."
    MASK_NOT_SINGLE_CHANNEL = "mask_not_single_channel", 422, "The mask is not a single-channel image of class indices."
    MASK_SIZE_MISMATCH = "mask_size_mismatch", 422, "The mask's width and height differ from the image's."
    UNKNOWN_MODEL = "unknown_model", 422, "No served model has this name; the models endpoint lists those served."
    VALIDATION_ERROR = "validation_error", 422, "A field is missing or out of range; `field` names it."
    CLIENT_DISCONNECTED = "client_disconnected", 499, "The client closed the connection; the analysis was stopped."
    INTERNAL_ERROR = "internal_error", 500, "An unexpected error on the server; it has been logged."
    NOT_READY = "not_ready", 503, "The models are still loading or warming up; retry in a few seconds (`GET /readyz`)."
    OVERLOADED = (
        "overloaded",
        503,
        ("The queue (`SEGU_MAX_QUEUE`) or the work budget (`SEGU_MAX_WORK`) is full right now; retry after the `Retry-After` header's seconds."),
    )
    TIMEOUT = "timeout", 504, "The analysis did not finish within `SEGU_REQUEST_TIMEOUT` seconds and was stopped."
