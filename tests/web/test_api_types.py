"""The page's TypeScript types (``static/js/api-types.d.ts``) are generated from the live OpenAPI schema: regenerate them
with openapi-typescript and compare with the committed file (``make jslint`` installs it with ``npm ci`` and regenerates)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "static" / "js" / "api-types.d.ts"
OPENAPI_TS = ROOT / "tools" / "openapi-types" / "node_modules" / ".bin" / "openapi-typescript"


def generated_types(out: Path) -> str:
    """The TypeScript types openapi-typescript writes for the app's schema now (scripts/openapi_json.py)."""
    schema = out / "openapi.json"
    env = {name: value for name, value in os.environ.items() if not name.startswith("SEGU_")}
    with schema.open("w") as stream:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "openapi_json.py")], stdout=stream, env=env, check=True, timeout=120)
    types = out / "api-types.d.ts"
    subprocess.run([str(OPENAPI_TS), str(schema), "-o", str(types)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    return types.read_text()


def test_committed_types_match_the_live_schema(tmp_path: Path) -> None:
    assert OPENAPI_TS.exists(), "openapi-typescript is not installed: run npm ci (make jslint, run by make test, does)"
    assert COMMITTED.read_text() == generated_types(tmp_path), f"{COMMITTED.relative_to(ROOT)} is stale: run make jslint and commit it"


def test_the_page_aliases_the_generated_types() -> None:
    """types.js declares no API or page-config shape by hand: those typedefs alias the generated schemas."""
    types_js = (ROOT / "static" / "js" / "types.js").read_text()
    aliases = dict((name, target) for target, name in re.findall(r"@typedef \{([^}]*)\} (\w+)", types_js))
    for name in ("Config", "ModelPage", "AnalyzeResponse", "EvaluateResponse", "PixelResponse", "MapOut", "RegionRow", "ErrorResponse"):
        assert aliases[name].startswith('Schemas["'), f"{name} is written by hand: {aliases[name]}"
    assert aliases["Schemas"] == 'import("./api-types").components["schemas"]'
