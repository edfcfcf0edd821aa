"""The page's configuration is a typed model: the JSON embedded in the page validates against it, and the OpenAPI
document carries it (so the page's TypeScript types are generated from it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from webutil import wait_ready, web_settings

from app.io.bundle import Bundle
from app.web.api_paths import API_PREFIX
from app.web.factory import create_app
from app.web.schemas.page_config import PageConfig

EMBEDDED = re.compile(r'<script type="application/json" id="segu-config">(.*?)</script>', re.DOTALL)


def test_the_embedded_config_is_a_page_config(tiny_bundle: Bundle, tiny_bundle_dir: Path) -> None:
    with TestClient(create_app(web_settings(tiny_bundle_dir), bundle=tiny_bundle)) as client:
        wait_ready(client)
        html = client.get("/").text
        spec = client.get("/openapi.json").json()
    match = EMBEDDED.search(html)
    assert match is not None
    embedded = json.loads(match.group(1))
    config = PageConfig.model_validate(embedded)
    assert config.model_dump(mode="json", by_alias=True) == embedded, "every key of the page's config is a field"
    assert (config.model, config.working_size, config.models[0].name) == ("tiny", embedded["workingSize"], "tiny")
    assert config.endpoints.analyze == f"{API_PREFIX}/analyze"
    schemas = spec["components"]["schemas"]
    assert set(schemas["PageConfig"]["properties"]) == set(embedded)
    assert schemas["PageConfig"]["properties"]["models"]["items"] == {"$ref": "#/components/schemas/PageModel"}
    assert set(schemas["PageModel"]["properties"]) == set(embedded["models"][0])
