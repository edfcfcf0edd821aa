"""One ErrorCode enum: every code's status and meaning in one place, the OpenAPI prose and the docs table generated from it."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from app.error_codes import ErrorCode
from app.io.decoding import ImageDecodeError, decode_image
from app.web.errors import ApiError, error_body, error_response, error_responses, error_table_markdown, protocol_responses
from app.web.forms import GATE_RESPONSES
from app.web.schemas.analysis import ErrorResponse


def test_every_code_has_an_http_error_status_and_a_sentence() -> None:
    for code in ErrorCode:
        assert code.value == code.name.lower()
        assert 400 <= code.status < 600, code
        assert code.status == 499 or code.status in {status.value for status in HTTPStatus}, code
        assert code.description.endswith(".") and len(code.description) > 20, code


def test_api_error_takes_its_status_from_the_code() -> None:
    error = ApiError(ErrorCode.NOT_READY, "loading", "model")
    assert (error.status, error.code, error.message, error.field) == (503, ErrorCode.NOT_READY, "loading", "model")
    response = error_response(ErrorCode.TOO_MUCH_WORK, "too big")
    assert response.status_code == 413
    assert json.loads(bytes(response.body)) == {"error": {"code": "too_much_work", "message": "too big"}}


def test_decoding_raises_enum_codes() -> None:
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(b"not an image")
    assert raised.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert error_body(raised.value.code, "x") == {"error": {"code": "unsupported_media_type", "message": "x"}}


def test_error_responses_group_codes_by_status() -> None:
    responses = error_responses(ErrorCode.TOO_MANY_PIXELS, ErrorCode.NOT_READY, ErrorCode.TOO_MUCH_WORK)
    assert list(responses) == [413, 503]
    assert responses[413]["model"] is ErrorResponse
    assert responses[413]["description"] == f"`too_many_pixels`: {ErrorCode.TOO_MANY_PIXELS.description} `too_much_work`: {ErrorCode.TOO_MUCH_WORK.description}"
    assert set(GATE_RESPONSES) == {408, 413, 503, 504}
    assert "`overloaded`" in GATE_RESPONSES[503]["description"]


def test_the_table_lists_every_code_once_by_status() -> None:
    lines = error_table_markdown().splitlines()
    assert lines[:2] == ["| code | status | meaning |", "|---|---|---|"]
    rows = [line.split(" | ") for line in lines[2:]]
    assert [row[0].strip("| `") for row in rows] == [c.value for c in sorted(ErrorCode, key=lambda c: (c.status, c.value))]
    assert [int(row[1]) for row in rows] == sorted(c.status for c in ErrorCode)


def test_the_protocols_own_answers_are_documented_for_every_route() -> None:
    assert ErrorCode.HEADER_TOO_LARGE.status == 431 and "SEGU_MAX_HEADER_BYTES" in ErrorCode.HEADER_TOO_LARGE.description
    assert "Transfer-Encoding" in ErrorCode.BAD_REQUEST.description
    responses = protocol_responses()
    assert list(responses) == [400, 431]
    assert responses[400]["description"] == f"`bad_request`: {ErrorCode.BAD_REQUEST.description}"
    assert responses[431]["description"] == f"`header_too_large`: {ErrorCode.HEADER_TOO_LARGE.description}"
