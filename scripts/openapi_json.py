"""Print the app's OpenAPI schema as JSON: the contract the page's TypeScript types are generated from.

The app is built by its factory with the default settings (``SEGU_*`` variables of the environment are ignored, so
the output depends on the code only); no server starts and no model loads (models load in the app's lifespan).
``make jslint`` pipes this into openapi-typescript to regenerate ``static/js/api-types.d.ts``.

Usage: python scripts/openapi_json.py > build/openapi.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.web.factory import create_app
from app.web.settings import Settings


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI document of the app built with the default settings, whatever ``SEGU_*`` variables are set."""
    for name in [name for name in os.environ if name.startswith("SEGU_")]:
        del os.environ[name]
    return create_app(Settings()).openapi()


def main() -> None:
    """Write the schema to stdout."""
    json.dump(openapi_schema(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
