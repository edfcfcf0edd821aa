"""Deployment safety: API keys, trusted hosts, cross-origin POSTs, security headers and CSP, docs switched off.

Every attack is followed by a normal request that must still succeed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from webutil import HttpResponse, LiveServer, assert_error, open_page, random_png, web_settings

from app.defaults import ALLOWED_HOSTS
from app.io.bundle import Bundle
from app.web.factory import create_app
from app.web.security import SECURITY_HEADERS, host_name
from app.web.settings import Settings

KEY = "k3y-for-tests_0123456789abcdef"
OTHER_KEY = "another-key-0123456789abcdef"
LOCAL = "http://localhost:8000"
FOREIGN = "http://evil.example"
ALLOWED_ORIGIN = "http://app.example"


def _png_form() -> dict[str, Any]:
    return {"files": {"file": ("a.png", random_png(24, 32), "image/png")}, "data": {"samples": "2"}}


def _bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _client(app: FastAPI, base_url: str = LOCAL) -> TestClient:
    return TestClient(app, base_url=base_url, raise_server_exceptions=False)


@pytest.fixture
def make_app(tiny_bundle: Bundle, tiny_bundle_dir: Path) -> Any:
    """Build an app of the tiny bundle with the real default hosts (clients here send Host: localhost:8000)."""

    def build(**overrides: object) -> FastAPI:
        values: dict[str, object] = {"warmup": False, "allowed_hosts": list(ALLOWED_HOSTS)} | overrides
        return create_app(web_settings(tiny_bundle_dir, **values), bundle=tiny_bundle)

    return build


@pytest.fixture
def keyed(make_app: Any) -> Iterator[TestClient]:
    with _client(make_app(api_keys=[KEY, OTHER_KEY])) as c:
        yield c


@pytest.fixture
def open_client(make_app: Any) -> Iterator[TestClient]:
    with _client(make_app(cors_origins=[ALLOWED_ORIGIN])) as c:
        yield c


def call_without_body(app: FastAPI, headers: dict[str, str], method: str = "POST", path: str = "/api/v1/analyze") -> tuple[int, bool]:
    """Call the ASGI app directly; the status it answers and whether it ever asked for the request body."""
    asked: list[bool] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        asked.append(True)
        return {"type": "http.request", "body": random_png(24, 32), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 8000),
    }
    anyio.run(cast("Callable[..., Awaitable[None]]", app), scope, receive, send)
    return int(sent[0]["status"]), bool(asked)


# ---- API keys ----


def test_api_needs_a_valid_bearer_key(keyed: TestClient) -> None:
    missing = keyed.get("/api/v1/models")
    assert_error(missing, 401, "unauthorized", "authorization")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for wrong in (_bearer("not-a-key-of-this-server-0123"), _bearer(KEY[:-1]), {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY}):
        response = keyed.get("/api/v1/models", headers=wrong)
        assert_error(response, 401, "unauthorized", "authorization")
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert keyed.get("/api/v1/models", headers=_bearer()).status_code == 200
    assert keyed.get("/api/v1/models", headers={"Authorization": f"bearer  {OTHER_KEY} "}).status_code == 200
    assert_error(keyed.post("/api/v1/analyze", **_png_form()), 401, "unauthorized")
    analysed = keyed.post("/api/v1/analyze", headers=_bearer(), **_png_form())
    assert analysed.status_code == 200, analysed.text
    npz = analysed.json()["npz_url"]
    assert_error(keyed.get(npz), 401, "unauthorized")
    assert keyed.get(npz, headers=_bearer()).status_code == 200


def test_keys_are_checked_before_the_body_is_read(make_app: Any) -> None:
    app = make_app(api_keys=[KEY])
    assert call_without_body(app, {"host": "localhost", "content-type": "image/png"}) == (401, False)
    assert call_without_body(app, {"host": "localhost", **_bearer("x" * 30)}) == (401, False)


def test_page_docs_probes_and_static_need_no_key_everything_else_does(keyed: TestClient) -> None:
    for path in ("/", "/docs", "/openapi.json", "/healthz", "/readyz", "/static/style.css", "/static/js/main.js", "/static/swagger/swagger-ui.css"):
        assert keyed.get(path).status_code == 200, path
    for path in ("/api/v1", "/api/v1/nothing", "/nothing", "/static"):
        assert_error(keyed.get(path), 401, "unauthorized")
    assert keyed.get("/nothing", headers=_bearer()).status_code == 404


def test_page_asks_for_the_key_only_when_keys_are_on(keyed: TestClient, open_client: TestClient) -> None:
    page = keyed.get("/").text
    assert 'id="api-key"' in page and "requires an API key" in page and 'id="error-authorization"' in page
    assert _page_config(page)["apiKeyRequired"] is True
    plain = open_client.get("/").text
    assert 'id="api-key"' not in plain and _page_config(plain)["apiKeyRequired"] is False


def test_openapi_declares_the_bearer_scheme_when_keys_are_on(keyed: TestClient, open_client: TestClient) -> None:
    spec = keyed.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["paths"]["/api/v1/analyze"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert "securitySchemes" not in open_client.get("/openapi.json").json().get("components", {})


def test_cors_preflight_needs_no_key_and_a_401_carries_cors_headers(make_app: Any) -> None:
    with _client(make_app(api_keys=[KEY], cors_origins=[ALLOWED_ORIGIN])) as c:
        preflight = c.options(
            "/api/v1/analyze", headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        )
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        refused = c.get("/api/v1/models", headers={"Origin": ALLOWED_ORIGIN})
        assert_error(refused, 401, "unauthorized")
        assert refused.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert c.post("/api/v1/analyze", headers={"Origin": ALLOWED_ORIGIN, **_bearer()}, **_png_form()).status_code == 200


@pytest.mark.parametrize("keys", ["short", "has space in it 0123456789", "non-ascii-é-0123456789abcdef"])
def test_weak_or_malformed_keys_are_refused_at_start_up(keys: str) -> None:
    with pytest.raises(ValidationError, match="API key 1"):
        Settings(api_keys=[keys])


def test_security_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGU_API_KEYS", f" {KEY} ,{OTHER_KEY},")
    monkeypatch.setenv("SEGU_ALLOWED_HOSTS", "Example.COM, [::1], *.internal.example.")
    monkeypatch.setenv("SEGU_DOCS", "false")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == [KEY, OTHER_KEY]
    assert KEY not in repr(settings) and KEY not in settings.model_dump_json()
    assert settings.allowed_hosts == ["example.com", "::1", "*.internal.example"]
    assert settings.docs is False
    monkeypatch.setenv("SEGU_API_KEYS", "")
    monkeypatch.setenv("SEGU_DOCS", "true")
    assert Settings().api_keys == [] and Settings().docs is True
    assert Settings(allowed_hosts=list(ALLOWED_HOSTS)).allowed_hosts == ["localhost", "127.0.0.1", "::1"]


@pytest.mark.parametrize("hosts", ["", "http://example.com", "example.com/path", "a b"])
def test_allowed_hosts_validation(hosts: str) -> None:
    with pytest.raises(ValidationError):
        Settings(allowed_hosts=hosts)


# ---- Trusted hosts ----


def test_default_hosts_are_the_loopback_names(tiny_bundle_dir: Path) -> None:
    assert Settings(model=str(tiny_bundle_dir)).allowed_hosts == ["localhost", "127.0.0.1", "::1"]


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:8000", 200),
        ("LOCALHOST", 200),
        ("localhost.", 200),
        ("127.0.0.1:1234", 200),
        ("[::1]:8000", 200),
        ("evil.example", 400),
        ("localhost.evil.example", 400),
        ("127.0.0.1.evil.example:8000", 400),
        ("evil.example:80@localhost", 400),
        ("", 400),
    ],
)
def test_foreign_hosts_get_400(open_client: TestClient, host: str, status: int) -> None:
    response = open_client.get("/api/v1/models", headers={"Host": host})
    if status == 400:
        assert_error(response, 400, "invalid_host")
        assert response.headers["x-content-type-options"] == "nosniff"
    else:
        assert response.status_code == 200, response.text
    assert open_client.get("/api/v1/models").status_code == 200


def test_rebound_post_is_refused_before_its_body_is_read(make_app: Any) -> None:
    assert call_without_body(make_app(), {"host": "rebound.evil.example:8000", "content-type": "image/png"}) == (400, False)


def test_wildcard_hosts(make_app: Any) -> None:
    with _client(make_app(allowed_hosts=["*.corp.example"]), "http://seg.corp.example") as c:
        assert c.get("/healthz").status_code == 200
        assert_error(c.get("/healthz", headers={"Host": "corp.example"}), 400, "invalid_host")
        assert_error(c.get("/healthz", headers={"Host": "evilcorp.example"}), 400, "invalid_host")
    with _client(make_app(allowed_hosts=["*"]), "http://anything.example:9000") as c:
        assert c.get("/healthz").status_code == 200


def test_host_name() -> None:
    assert [host_name(h) for h in ("LocalHost:80", "[::1]:8000", "[::1]", "::1", "example.com.", "")] == ["localhost", "::1", "::1", "::1", "example.com", ""]


# ---- Cross-origin POSTs ----


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": FOREIGN},
        {"Origin": "null"},
        {"Origin": "http://localhost:8001"},
        {"Origin": "https://localhost:8000.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": LOCAL, "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_origin_posts_get_403_and_are_not_analysed(make_app: Any, open_client: TestClient, headers: dict[str, str]) -> None:
    status, read = call_without_body(make_app(cors_origins=[ALLOWED_ORIGIN]), {"host": "localhost:8000", **{k.lower(): v for k, v in headers.items()}})
    assert (status, read) == (403, False)
    refused = open_client.post("/api/v1/analyze", headers=headers, **_png_form())
    assert_error(refused, 403, "forbidden_origin")
    assert refused.headers["connection"] == "close"
    assert open_client.post("/api/v1/analyze", **_png_form()).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": LOCAL},
        {"Origin": LOCAL, "Sec-Fetch-Site": "same-origin"},
        {"Origin": ALLOWED_ORIGIN},
        {"Origin": ALLOWED_ORIGIN, "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_own_and_allowed_origins_pass(open_client: TestClient, headers: dict[str, str]) -> None:
    response = open_client.post("/api/v1/analyze", headers=headers, **_png_form())
    assert response.status_code == 200, response.text
    if headers.get("Origin") == ALLOWED_ORIGIN:
        assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_any_origin_when_cors_allows_every_origin(make_app: Any) -> None:
    with _client(make_app(cors_origins=["*"])) as c:
        assert c.post("/api/v1/analyze", headers={"Origin": FOREIGN, "Sec-Fetch-Site": "cross-site"}, **_png_form()).status_code == 200


def test_foreign_gets_are_answered(open_client: TestClient) -> None:
    response = open_client.get("/api/v1/models", headers={"Origin": FOREIGN, "Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


# ---- Security headers ----


def _assert_security_headers(response: HttpResponse, csp: str | None = None) -> None:
    for name, value in SECURITY_HEADERS.items():
        if name == "Content-Security-Policy" and csp is not None:
            assert response.headers[name] == csp
        else:
            assert response.headers[name] == value, name
    policy = response.headers["content-security-policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    for directive in ("default-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'", "form-action 'self'"):
        assert directive in policy


def test_security_headers_on_every_kind_of_response(make_app: Any) -> None:
    app = make_app(api_keys=[KEY])

    async def boom() -> None:
        raise RuntimeError("on purpose")

    app.add_api_route("/api/v1/boom", boom)
    with _client(app) as c:
        responses = [
            c.get("/"),
            c.get("/static/style.css"),
            c.get("/static/js/main.js"),
            c.get("/static/swagger/swagger-ui-bundle.js"),
            c.get("/openapi.json"),
            c.get("/healthz"),
            c.get("/api/v1/models", headers=_bearer()),
            c.get("/api/v1/models"),
            c.get("/api/v1/analyses/nope/npz", headers=_bearer()),
            c.post("/api/v1/analyze", headers=_bearer(), data={"samples": "x"}),
            c.get("/static/nothing.css"),
            c.get("/", headers={"Host": "evil.example"}),
            c.post("/api/v1/analyze", headers={"Origin": FOREIGN, **_bearer()}, **_png_form()),
            c.get("/api/v1/boom", headers=_bearer()),
        ]
        assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 200, 200, 401, 404, 422, 404, 400, 403, 500]
        for response in responses:
            _assert_security_headers(response)
        assert c.get("/api/v1/models", headers=_bearer()).status_code == 200


def test_docs_allow_exactly_their_own_inline_script(open_client: TestClient) -> None:
    docs = open_client.get("/docs")
    policy = docs.headers["content-security-policy"]
    _assert_security_headers(docs, csp=policy)
    hashes = re.findall(r"'sha256-[A-Za-z0-9+/=]+'", policy)
    assert len(hashes) == 1 and f"script-src 'self' {hashes[0]};" in policy
    assert policy.replace(f" {hashes[0]}", "") == SECURITY_HEADERS["Content-Security-Policy"]


def test_page_has_no_inline_code_or_styles(open_client: TestClient) -> None:
    html = open_client.get("/").text
    assert not re.search(r"\sstyle=", html), "style attributes need 'unsafe-inline'"
    assert not re.search(r"<style", html) and not re.search(r"\son[a-z]+=", html) and "javascript:" not in html
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'src="/static/' in tag or 'type="application/json"' in tag, tag


# ---- Docs switched off ----


def test_docs_can_be_switched_off(make_app: Any) -> None:
    with _client(make_app(docs=False)) as c:
        for path in ("/docs", "/openapi.json", "/static/swagger/swagger-ui-bundle.js", "/redoc"):
            response = c.get(path)
            assert_error(response, 404, "not_found")
            _assert_security_headers(response)
        assert c.get("/").status_code == 200 and c.get("/api/v1/models").status_code == 200


def _page_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="segu-config">(.*?)</script>', html, re.DOTALL)
    assert match is not None
    return dict(json.loads(match.group(1)))


# ---- In Chromium, against real uvicorn servers ----


@pytest.fixture(scope="module")
def keyed_server(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    server = LiveServer(web_settings(tiny_bundle_dir, api_keys=[KEY], warmup=False)).start()
    yield server
    server.stop()


@pytest.fixture
def keyed_page(browser: Any, keyed_server: LiveServer) -> Iterator[Any]:
    yield from open_page(browser, keyed_server.url)


def _csp_messages(page: Any) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(msg.text) if "Content Security Policy" in msg.text else None)
    return messages


DRAWN = "() => document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length >= 2 && document.body.dataset.state === 'ready'"
STYLES = """() => ({
  swatch: getComputedStyle(document.querySelector('#class-legend .swatch')).backgroundColor,
  bar: getComputedStyle(document.querySelector('.colourbar')).backgroundImage,
  ticks: [...document.querySelectorAll('.ticks span')].slice(0, 2).map((el) => el.style.left),
})"""


@pytest.mark.browser
def test_page_works_under_the_csp(page: Any) -> None:
    violations = _csp_messages(page)
    page.reload()
    styles = page.evaluate(STYLES)
    assert styles["swatch"] not in ("", "rgba(0, 0, 0, 0)") and styles["bar"].startswith("linear-gradient")
    assert styles["ticks"] and all(t.endswith("%") for t in styles["ticks"])
    page.set_input_files("#file-input", [{"name": "a.png", "mimeType": "image/png", "buffer": random_png()}])
    page.wait_for_function(DRAWN, timeout=60_000)
    for download in ("#download-links a", "#download-npz"):
        with page.expect_download():
            page.click(download)
    assert violations == []


@pytest.mark.browser
def test_page_sends_the_pasted_key(keyed_page: Any) -> None:
    page = keyed_page
    violations = _csp_messages(page)
    assert page.is_visible("#api-key") and "requires an API key" in page.inner_text("#api-key-fields")
    page.set_input_files("#file-input", [{"name": "a.png", "mimeType": "image/png", "buffer": random_png()}])
    page.wait_for_selector("#error-authorization:not([hidden])", timeout=30_000)
    assert "requires an API key" in page.inner_text("#error-authorization")
    page.fill("#api-key", "wrong-key-0123456789abcdef")
    page.click("#rerun")
    page.wait_for_function("() => document.querySelector('#error-authorization').textContent.includes('not valid')", timeout=30_000)
    page.fill("#api-key", KEY)
    page.click("#rerun")
    page.wait_for_function(DRAWN, timeout=60_000)
    assert page.evaluate("sessionStorage.getItem('segu-api-key')") == KEY
    page.reload()
    assert page.input_value("#api-key") == KEY, "kept for this tab"
    assert violations == []


@pytest.mark.browser
def test_foreign_page_cannot_post_an_upload(browser: Any, base_url: str) -> None:
    """A page of another origin submits a real multipart form to the API (a "simple" request, no preflight): 403."""
    attacker = "http://localhost:9/"
    form = f"""<!doctype html><form id="f" method="post" enctype="multipart/form-data" action="{base_url}/api/v1/analyze">
      <input type="file" name="file" id="file"><input name="samples" value="4"></form>"""
    context = browser.new_context()
    page = context.new_page()
    try:
        page.route(attacker, lambda route: route.fulfill(status=200, content_type="text/html", body=form))
        page.goto(attacker)
        with page.expect_response(f"{base_url}/api/v1/analyze") as answer:
            page.evaluate(
                """(bytes) => { const t = new DataTransfer(); t.items.add(new File([new Uint8Array(bytes)], 'a.png', {type: 'image/png'}));
                   document.querySelector('#file').files = t.files; document.querySelector('#f').submit(); }""",
                list(random_png()),
            )
        response = answer.value
        assert response.status == 403 and response.request.headers.get("origin") == "http://localhost:9"
        assert json.loads(response.body())["error"]["code"] == "forbidden_origin"
    finally:
        context.close()
    normal = httpx.post(f"{base_url}/api/v1/analyze", files={"file": ("a.png", random_png(), "image/png")})
    assert normal.status_code == 200


@pytest.mark.browser
def test_docs_render_under_their_csp(browser: Any, keyed_server: LiveServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    violations = _csp_messages(page)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{keyed_server.url}/docs")
        page.wait_for_selector('.opblock-summary-path[data-path="/api/v1/analyze"]', timeout=30_000)
        assert page.is_visible("button.authorize"), "the Bearer scheme gives the docs an Authorize button"
    finally:
        context.close()
    assert violations == [] and errors == []
