"""Upload file names of any length (issue 20, item 8): a 10,000-character name is analysed, and what the server keeps, echoes
and names downloads after is cut to a documented length with the extension kept."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from webutil import LiveServer, assert_error, labelled_scene, mask_png, random_png, web_settings

from app.web.encoding import DOWNLOAD_STEM_CHARS, download_name
from app.web.forms import MAX_PART_HEADER_BYTES, UPLOAD_NAME_CHARS, short_name

TIMEOUT = 60.0
LONG = "r" * 9_996 + ".png"


def disposition_name(response: httpx.Response) -> str:
    match = re.fullmatch(r'attachment; filename="([^"]+)"', response.headers["content-disposition"])
    assert match is not None, response.headers["content-disposition"]
    return match.group(1)


def test_a_10000_character_name_is_analysed_and_named_downloads_stay_short(base_url: str) -> None:
    assert len(LONG) == 10_000
    response = httpx.post(f"{base_url}/api/v1/analyze", files={"file": (LONG, random_png())}, data={"samples": "1"}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    for path in (body["npz_url"], body["prediction"]["url"]):
        download = httpx.get(f"{base_url}{path}", timeout=TIMEOUT)
        assert download.status_code == 200
        name = disposition_name(download)
        assert name.startswith("r" * DOWNLOAD_STEM_CHARS) and len(name.encode()) <= 255
        assert name.removeprefix("r" * DOWNLOAD_STEM_CHARS).lstrip("r") in ("_maps.npz", "_prediction.png")


def test_a_long_name_in_format_npz_and_in_a_multibyte_name(base_url: str) -> None:
    multibyte = "é" * 9_996 + ".png"  # 19,996 bytes of UTF-8 in the part header
    response = httpx.post(f"{base_url}/api/v1/analyze", files={"file": (multibyte, random_png())}, data={"samples": "1", "format": "npz"}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert disposition_name(response) == "analysis_maps.npz"  # no ASCII letter or digit left of the name


def test_evaluate_echoes_a_long_mask_name_cut_short(base_url: str) -> None:
    image, mask = labelled_scene(size=32)
    wrong_size = mask_png(mask[:16])
    long_mask = "m" * 9_995 + ".png"
    files = {"file": ("scene.png", image), "mask": (long_mask, wrong_size)}
    response = httpx.post(f"{base_url}/api/v1/evaluate", files=files, data={"samples": "1"}, timeout=TIMEOUT)
    error = assert_error(response, 422, "mask_size_mismatch")
    assert short_name(long_mask) in error["message"] and "m" * (UPLOAD_NAME_CHARS + 1) not in error["message"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("short.png", "short.png"),
        ("x" * 255, "x" * 255),
        ("x" * 300 + ".png", "x" * 250 + "\u2026.png"),
        ("x" * 300 + ".tar.gz", "x" * 251 + "\u2026.gz"),
        ("x" * 300, "x" * 254 + "\u2026"),
        ("x" * 300 + "." + "e" * 20, "x" * 254 + "\u2026"),
        ("." + "x" * 300, "." + "x" * 253 + "\u2026"),
    ],
)
def test_short_name(name: str, expected: str) -> None:
    assert short_name(name) == expected and len(expected) <= UPLOAD_NAME_CHARS


def test_download_name() -> None:
    assert download_name("my photo (1).JPG", "_maps.npz") == "my_photo_1_maps.npz"
    assert download_name("dir/../.hidden.png", ".png") == "hidden.png"
    assert download_name("é" * 300 + ".png", "_maps.npz") == "analysis_maps.npz"
    assert download_name("a" * 300 + ".png", "_x.png") == "a" * DOWNLOAD_STEM_CHARS + "_x.png"
    assert download_name(None, "_maps.npz") == "analysis_maps.npz"


@pytest.fixture(scope="module")
def roomy_server(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    """A body limit of 1 MiB: room for a part header over :data:`MAX_PART_HEADER_BYTES`."""
    live = LiveServer(web_settings(tiny_bundle_dir, max_body_bytes=2**20, warmup=False)).start()
    yield live
    live.stop()


def test_a_part_header_over_its_limit_is_a_400_and_a_body_over_its_limit_a_413(roomy_server: LiveServer) -> None:
    url = f"{roomy_server.url}/api/v1/analyze"
    assert MAX_PART_HEADER_BYTES < 2**20
    over_header = "h" * (MAX_PART_HEADER_BYTES + 1) + ".png"
    assert_error(httpx.post(url, files={"file": (over_header, random_png())}, timeout=TIMEOUT), 400, "bad_request")
    over_body = "b" * 2**20 + ".png"
    assert_error(httpx.post(url, files={"file": (over_body, random_png())}, timeout=TIMEOUT), 413, "body_too_large")
    under_header = "u" * (MAX_PART_HEADER_BYTES - 200) + ".png"
    assert httpx.post(url, files={"file": (under_header, random_png())}, data={"samples": "1"}, timeout=TIMEOUT).status_code == 200
