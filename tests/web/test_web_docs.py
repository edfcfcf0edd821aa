"""``/docs`` works offline: Swagger UI's files come from this server, and nothing else is fetched."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from webutil import assert_error

ASSET = re.compile(r"""(?:src|href)="([^"]+)"|url:\s*'([^']+)'""")


def test_docs_html_references_only_this_server(base_url: str) -> None:
    response = httpx.get(f"{base_url}/docs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "SwaggerUIBundle(" in html
    assert [u for u in re.findall(r"https?://[^\s\"'<>]+", html) if not u.startswith(base_url)] == []
    assert "//" not in "".join(a or b for a, b in ASSET.findall(html))
    assets = {a or b for a, b in ASSET.findall(html)}
    assert {"/static/swagger/swagger-ui-bundle.js", "/static/swagger/swagger-ui.css", "/openapi.json"} <= assets
    sizes = {}
    for url in assets:
        asset = httpx.get(f"{base_url}{url}")
        assert asset.status_code == 200, url
        sizes[url] = len(asset.content)
    assert sizes["/static/swagger/swagger-ui-bundle.js"] > 100_000 and sizes["/static/swagger/swagger-ui.css"] > 10_000
    js = httpx.get(f"{base_url}/static/swagger/swagger-ui-bundle.js")
    assert js.headers["content-type"].startswith("text/javascript") and b"SwaggerUIBundle" in js.content
    assert httpx.get(f"{base_url}/static/swagger/swagger-ui.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/static/swagger/index.html", "/static/swagger/swagger-initializer.js", "/redoc"])
def test_only_the_docs_assets_are_served(base_url: str, path: str) -> None:
    assert_error(httpx.get(f"{base_url}{path}"), 404, "not_found")


@pytest.mark.browser
def test_docs_render_offline_in_chromium(browser: Any, base_url: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.on("requestfailed", lambda req: failed.append(req.url))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{base_url}/docs")
        page.wait_for_selector('.opblock-summary-path[data-path="/api/v1/analyze"]', timeout=30_000)
        page.wait_for_selector('.opblock-summary-path[data-path="/api/v1/evaluate"]', timeout=5_000)
        page.click('.opblock-summary-path[data-path="/api/v1/evaluate"]')
        page.wait_for_selector("text=ood_label", timeout=10_000)
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    network = [u for u in requests if not u.startswith("data:")]
    assert f"{base_url}/openapi.json" in network and f"{base_url}/static/swagger/swagger-ui-bundle.js" in network
    assert [u for u in network if not u.startswith(base_url)] == [], network
    assert failed == [] and errors == []
