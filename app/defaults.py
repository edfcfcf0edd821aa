"""The one place every default and shared constant is written.

Everything else imports these names; a default that appears as a literal in two modules is a bug.
"""

from __future__ import annotations

from typing import Final

DEFAULT_MODEL = "default"
DEFAULT_SAMPLES = 20
MAX_SAMPLES = 64
DEFAULT_SEED = 0
MAX_PIXELS = 40_000_000
MAX_BODY_BYTES = 50 * 2**20
MEMORY_BUDGET = 512 * 2**20
MIN_AREA = 64
IGNORE_INDEX = 255
ECE_BINS = 15
SCORE_BINS = 65_536
TEMPERATURE_FIT_MAX_PIXELS = 20_000_000
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"})
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
MAX_SEED = 2**32 - 1
MAX_LABEL = 2**16 - 1
JPEG_QUALITY = 85
CACHE_ENTRIES = 64
CACHE_BYTES = 512 * 2**20
CACHE_TTL_SECONDS = 900.0
TOP_CLASSES = 3
REGION_ROWS_SHOWN = 10
RESOLUTIONS: Final = ("working", "full")
DEFAULT_RESOLUTION: Final = "working"
PIXEL_DEBOUNCE_MS = 120
RERUN_DEBOUNCE_MS = 400
