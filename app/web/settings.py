"""Server settings, read from ``SEGU_*`` environment variables when the app is built."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.defaults import (
    ALLOWED_HOSTS,
    API_KEY_MIN_LENGTH,
    BODY_TIMEOUT,
    CACHE_BYTES,
    CACHE_ENTRIES,
    CACHE_TTL_SECONDS,
    DEFAULT_MODEL,
    DEFAULT_MODELS,
    DEFAULT_SAMPLES,
    HEADER_TIMEOUT,
    JOB_TIMEOUT,
    JOB_TTL_SECONDS,
    KEEP_ALIVE_TIMEOUT,
    MAX_BATCH_SIZE,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_JOB_PIXELS,
    MAX_JOB_WORK,
    MAX_JOBS,
    MAX_PIXELS,
    MAX_QUEUE,
    MAX_SAMPLES,
    MAX_TILED_PIXELS,
    MAX_WAIT_MS,
    MAX_WORK,
    MEMORY_BUDGET,
    MIN_AREA,
    REQUEST_TIMEOUT,
    STREAM_PIXELS,
)

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_API_KEY = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")  # RFC 6750 b64token: what a Bearer header may carry
_HOST = re.compile(r"^(\*|(\*\.)?[a-z0-9_.-]+|[0-9a-f:.]+)$")


class Settings(BaseSettings):
    """Everything the server can be configured with.

    Every field can be set from the environment with the ``SEGU_`` prefix,
    e.g. ``SEGU_MODEL=models/default`` or ``SEGU_CORS_ORIGINS=http://a.example,http://b.example``.
    Build it in the app factory (``Settings()``), never at import time.
    """

    model_config = SettingsConfigDict(env_prefix="SEGU_", extra="ignore")

    model: str = Field(
        default=DEFAULT_MODEL,
        min_length=1,
        description="One model to serve: a bundle name under models/, a bundle folder, or a folder written by smp's model.save_pretrained. "
        "Set (and `models` not), only this model is served.",
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_MODELS),
        description="Several models served at once, comma-separated, each like `model` (names must differ); the first is the default. "
        "Unset: `model` when that is set, else the synthetic demo and the person model.",
    )
    device: str = Field(default="auto", description="auto, cpu or cuda[:N].")
    default_samples: int | None = Field(
        default=None,
        ge=0,
        description=f"MC dropout samples used when a request does not say, for every model; unset: each model's card `default_samples` "
        f"(else {DEFAULT_SAMPLES}).",
    )
    max_samples: int = Field(default=MAX_SAMPLES, ge=0, le=4096, description="Largest number of MC samples a request may ask for.")
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1024, description="Largest request body in bytes; enforced while the body streams in.")
    max_pixels: int = Field(default=MAX_PIXELS, ge=1, description="Largest width x height of a decoded image.")
    max_tiled_pixels: int = Field(
        default=MAX_TILED_PIXELS,
        ge=0,
        description="Largest width x height of a tiled TIFF or BigTIFF beyond max_pixels, analysed at resolution=full tile by tile (never "
        "decoded whole; memory bounded by one band of windows) into a chunked store; 0: such files are refused. Their uploads are "
        "bounded by max_body_bytes too.",
    )
    max_concurrent: int = Field(default=1, ge=1, le=16, description="Analyses allowed to run at the same time (bounds memory).")
    memory_budget: int = Field(
        default=MEMORY_BUDGET,
        ge=2**20,
        description="Bytes the engine's working memory may take for one analysis (tiles, MC sample chunks, the blending band): "
        "it sizes the sliding-window tiles; `analyze --memory-budget` is the same knob.",
    )
    min_area: int = Field(default=MIN_AREA, ge=1, description="Smallest connected component listed in the region table, in pixels.")
    warmup: bool = Field(default=True, description="Run one small analysis before reporting ready.")
    torch_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Threads PyTorch uses for one analysis (0: PyTorch's default, one per core). On a small machine that also runs "
        "other work, 1 keeps latency steady under load: OpenMP threads that wait for a busy core stall the whole analysis.",
    )
    compile_kernels: bool = Field(
        default=True,
        description="Compile the Rao–Blackwellised estimator's kernels with torch.compile on first use (a C++ compiler is needed; "
        "without one, or with false, they run eagerly, about 2× slower).",
    )
    cache_entries: int = Field(default=CACHE_ENTRIES, ge=0, description="Most analyses kept for downloads by id (0: none kept).")
    cache_bytes: int = Field(default=CACHE_BYTES, ge=0, description="Most bytes of arrays kept for downloads by id, all analyses together.")
    stream_pixels: int = Field(
        default=STREAM_PIXELS,
        ge=1,
        description="A resolution=full analysis of more pixels than this is streamed to a chunked store on disk (previews in the answer, "
        "exact values by id from the store) instead of held in memory.",
    )
    store_dir: Path | None = Field(
        default=None,
        description="Where streamed analyses' stores are kept while their ids live (their bytes count against cache_bytes); unset: a "
        "temporary folder of the server's, removed when it stops.",
    )
    cache_ttl_seconds: float = Field(default=CACHE_TTL_SECONDS, gt=0, description="Seconds an analysis stays downloadable by id after its last use.")
    analysis_id_prefix: str = Field(
        default="",
        pattern=r"^([a-z0-9]+\.)?$",
        description="Start of every analysis id (`name.`, or nothing). Ray Serve replicas put their replica id here, so that requests "
        "for a kept analysis are routed to the replica that holds it (app/web/ray_serve.py).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Origins allowed by CORS; empty: CORS off.")

    # ---- Admission control, deadlines and slow clients (app/web/admission.py, service.py, limits.py; serve) ----
    max_queue: int = Field(default=MAX_QUEUE, ge=0, le=4096, description="Analyses that may wait for a slot behind the running ones; more → 503.")
    max_work: int = Field(
        default=MAX_WORK,
        ge=1,
        description="Most work (analysed pixels × passes × (samples + 1)) admitted at once, running and waiting; one request over it runs as a "
        "job (202) when it fits SEGU_MAX_JOB_WORK, else → 413.",
    )
    request_timeout: float = Field(
        default=REQUEST_TIMEOUT, gt=0, description="Seconds an admitted analysis may take, waiting included; then it is stopped and answered 504."
    )
    # ---- Long analyses as jobs (app/web/jobs.py) ----
    max_job_work: int = Field(
        default=MAX_JOB_WORK,
        ge=1,
        description="Most work of one job: a request over SEGU_MAX_WORK but within it is answered 202 with a job id and runs in the "
        "background (one job at a time, with progress and cancel); over it → 413.",
    )
    max_job_pixels: int = Field(
        default=MAX_JOB_PIXELS,
        ge=1,
        description="Most analysed pixels of one job (its results take up to ~256 bytes per analysed pixel in memory); over it → 413.",
    )
    job_timeout: float = Field(
        default=JOB_TIMEOUT, gt=0, description="Seconds a job may take once admitted (waiting for its running slot included); then it fails with timeout."
    )
    max_jobs: int = Field(
        default=MAX_JOBS,
        ge=0,
        le=1024,
        description="Jobs kept at once, queued, running or finished (0: no jobs); a new job when every kept job is unfinished → 503.",
    )
    job_ttl_seconds: float = Field(default=JOB_TTL_SECONDS, gt=0, description="Seconds a finished job (its status and result) stays readable by id.")
    body_timeout: float = Field(default=BODY_TIMEOUT, gt=0, description="Seconds a client has to send the whole request body; then 408.")
    keep_alive_timeout: int = Field(default=KEEP_ALIVE_TIMEOUT, ge=1, description="serve: seconds an idle keep-alive connection stays open.")
    header_timeout: float = Field(default=HEADER_TIMEOUT, gt=0, description="serve: seconds a client has to send a request's headers; then it is closed.")
    max_header_bytes: int = Field(default=MAX_HEADER_BYTES, ge=1024, description="serve: largest request head (request line and headers) in bytes.")

    # ---- Dynamic batching (app/workflows/batching.py) ----
    max_batch_size: int = Field(
        default=MAX_BATCH_SIZE,
        ge=1,
        le=64,
        description="Most running analyses of the same analysed size whose deterministic network pass is run as one batch (1: no batching). "
        "Each batched analysis holds its own running slot, so batches hold at most SEGU_MAX_CONCURRENT images.",
    )
    max_wait_ms: float = Field(
        default=MAX_WAIT_MS, ge=0, le=10_000, description="Longest a batch's first analysis waits for others to join it, in milliseconds."
    )

    # ---- Deployment safety (app/web/security.py) ----
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Keys accepted as `Authorization: Bearer <key>` on /api/*, comma-separated; empty: no key needed."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(ALLOWED_HOSTS),
        description="Names the Host header may carry (any port), comma-separated; `*.example.com` matches its subdomains, `*` any host.",
    )
    docs: bool = Field(default=True, description="Serve Swagger UI at /docs and the OpenAPI document at /openapi.json.")

    # ---- Observability (app/web/metrics.py, observe.py, access_log.py) ----
    metrics: bool = Field(default=True, description="Serve Prometheus metrics at /metrics (behind the API key when SEGU_API_KEYS is set).")

    @property
    def model_sources(self) -> list[str]:
        """The models to serve, the default first: ``models`` when set; else ``[model]`` when ``model`` is set; else both shipped models."""
        if "models" not in self.model_fields_set and "model" in self.model_fields_set:
            return [self.model]
        return list(self.models) or [self.model]

    @field_validator("api_keys", "allowed_hosts", "models", mode="before")
    @classmethod
    def _comma_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _key_shape(cls, value: list[SecretStr]) -> list[SecretStr]:
        for number, key in enumerate(value, 1):
            secret = key.get_secret_value()
            if len(secret) < API_KEY_MIN_LENGTH or not _API_KEY.match(secret):
                raise ValueError(
                    f"API key {number} must be at least {API_KEY_MIN_LENGTH} characters of A-Z a-z 0-9 . _ ~ + / - "
                    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_shape(cls, value: list[str]) -> list[str]:
        hosts = [host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".") for host in value]
        if not hosts:
            raise ValueError("allowed_hosts must name at least one host; `*` allows every host")
        for host in hosts:
            if not _HOST.match(host):
                raise ValueError(f"an allowed host is a name or address without port or scheme, `*.domain` or `*`, got {host!r}")
        return hosts

    @field_validator("models")
    @classmethod
    def _distinct_models(cls, value: list[str]) -> list[str]:
        repeated = sorted({source for source in value if value.count(source) > 1})
        if repeated:
            raise ValueError(f"models lists {', '.join(repeated)} more than once; list each model once")
        return value

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
        if self.default_samples is not None and self.default_samples > self.max_samples:
            raise ValueError(f"default_samples ({self.default_samples}) must not exceed max_samples ({self.max_samples})")
        return self


def env_name(field: str) -> str:
    """The environment variable that sets :class:`Settings` field ``field``, e.g. ``env_name("max_work") == "SEGU_MAX_WORK"``.

    Raises:
        KeyError: ``field`` is not a settings field (so a message never names a variable the server does not read).
    """
    if field not in Settings.model_fields:
        raise KeyError(f"{field!r} is not a Settings field; the fields are {', '.join(Settings.model_fields)}")
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


def _default_text(value: object) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else "(empty)"
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def settings_table_markdown() -> str:
    """The Markdown table of every setting (environment variable | default | description), for the documentation."""
    rows = ["| environment variable | default | description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = _default_text(field.get_default(call_default_factory=True))
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{env_name(name)}` | `{default}` | {description} |")
    return "\n".join(rows) + "\n"
