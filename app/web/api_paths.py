"""Where the REST API lives: every route, link and message builds its path from :data:`API_PREFIX`."""

from typing import Final

__all__ = ["ANALYSES_PATH", "API_PREFIX", "JOBS_PATH"]

API_PREFIX: Final = "/api/v1"
ANALYSES_PATH: Final = f"{API_PREFIX}/analyses"
JOBS_PATH: Final = f"{API_PREFIX}/jobs"
