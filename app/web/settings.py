"""Server settings, read from ``SEGU_*`` environment variables when the app is built."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.defaults import (
    CACHE_BYTES,
    CACHE_ENTRIES,
    CACHE_TTL_SECONDS,
    DEFAULT_MODEL,
    DEFAULT_SAMPLES,
    MAX_BODY_BYTES,
    MAX_PIXELS,
    MAX_SAMPLES,
    MEMORY_BUDGET,
    MIN_AREA,
)

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class Settings(BaseSettings):
    """Everything the server can be configured with.

    Every field can be set from the environment with the ``SEGU_`` prefix,
    e.g. ``SEGU_MODEL=models/default`` or ``SEGU_CORS_ORIGINS=http://a.example,http://b.example``.
    Build it in the app factory (``Settings()``), never at import time.
    """

    model_config = SettingsConfigDict(env_prefix="SEGU_", extra="ignore")

    model: str = Field(default=DEFAULT_MODEL, min_length=1, description="Bundle name under models/ or path of a bundle folder.")
    device: str = Field(default="auto", description="auto, cpu or cuda[:N].")
    default_samples: int = Field(default=DEFAULT_SAMPLES, ge=0, description="MC dropout samples used when a request does not say.")
    max_samples: int = Field(default=MAX_SAMPLES, ge=0, le=4096, description="Largest number of MC samples a request may ask for.")
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1024, description="Largest request body in bytes; enforced while the body streams in.")
    max_pixels: int = Field(default=MAX_PIXELS, ge=1, description="Largest width x height of a decoded image.")
    max_concurrent: int = Field(default=1, ge=1, le=16, description="Analyses allowed to run at the same time (bounds memory).")
    memory_budget: int = Field(default=MEMORY_BUDGET, ge=2**20, description="Bytes one chunk of MC samples may use.")
    min_area: int = Field(default=MIN_AREA, ge=1, description="Smallest connected component listed in the region table, in pixels.")
    warmup: bool = Field(default=True, description="Run one small analysis before reporting ready.")
    cache_entries: int = Field(default=CACHE_ENTRIES, ge=0, description="Most analyses kept for downloads by id (0: none kept).")
    cache_bytes: int = Field(default=CACHE_BYTES, ge=0, description="Most bytes of arrays kept for downloads by id, all analyses together.")
    cache_ttl_seconds: float = Field(default=CACHE_TTL_SECONDS, gt=0, description="Seconds an analysis stays downloadable by id after its last use.")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Origins allowed by CORS; empty: CORS off.")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE.match(value):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {value!r}")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origin_shape(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"a CORS origin looks like http(s)://host[:port] with no path, got {origin!r}")
        return value

    @model_validator(mode="after")
    def _samples(self) -> Settings:
        if self.default_samples > self.max_samples:
            raise ValueError(f"default_samples ({self.default_samples}) must not exceed max_samples ({self.max_samples})")
        return self
