"""The shared model and the worker-thread gate every analysis passes through."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio
import anyio.to_thread
import numpy as np
import torch

from app.engine.analysis import Analysis
from app.io.bundle import Bundle
from app.web.cache import AnalysisCache
from app.web.settings import Settings
from app.workflows.analyzer import Analyzer, Resolution
from app.workflows.labelled import analyze_labelled

T = TypeVar("T")
log = logging.getLogger("app.web")


class AnalysisService:
    """One model instance shared by all requests.

    Analyses run in worker threads so the event loop keeps serving; a capacity
    limiter bounds how many run at once (and so the memory they take). Dropout
    masks are seeded per request through a context variable, so concurrent
    analyses do not disturb each other.

    Args:
        bundle: The loaded model bundle.
        device: Where to run it.
        settings: Limits and defaults.
    """

    def __init__(self, bundle: Bundle, device: torch.device, settings: Settings) -> None:
        self.bundle = bundle
        self.device = device
        self.settings = settings
        self.analyzer = Analyzer(bundle, device, max_pixels=settings.max_pixels, memory_budget=settings.memory_budget)
        self.limiter = anyio.CapacityLimiter(settings.max_concurrent)
        self.cache = AnalysisCache(settings.cache_entries, settings.cache_bytes, settings.cache_ttl_seconds)
        self.ready = False
        self.failure: str | None = None

    @property
    def name(self) -> str:
        """The model's name."""
        return self.bundle.card.name

    async def analyze(self, data: bytes, samples: int, seed: int, calibrated: bool, resolution: Resolution = "working") -> Analysis:
        """Decode and analyse an upload in a worker thread.

        Raises:
            app.io.decoding.ImageDecodeError: the upload is not a usable image.
        """
        job = partial(
            self.analyzer.analyze_bytes, data, samples=samples, seed=seed, calibrated=calibrated, min_area=self.settings.min_area, resolution=resolution
        )
        return await anyio.to_thread.run_sync(job, limiter=self.limiter)

    async def evaluate(
        self, data: bytes, mask: bytes, samples: int, seed: int, calibrated: bool, mask_name: str = "mask", resolution: Resolution = "working"
    ) -> tuple[Analysis, np.ndarray]:
        """Decode an image and its mask, check they pair up, then analyse the image, in a worker thread.

        Raises:
            app.io.decoding.ImageDecodeError: the upload is not a usable image.
            app.io.masks.MaskError: the mask is unusable or does not match the image.
        """
        job = partial(
            analyze_labelled,
            self.analyzer,
            data,
            mask,
            mask_name=mask_name,
            samples=samples,
            seed=seed,
            calibrated=calibrated,
            min_area=self.settings.min_area,
            resolution=resolution,
        )
        labelled = await anyio.to_thread.run_sync(job, limiter=self.limiter)
        return labelled.analysis, labelled.mask

    async def run(self, func: Callable[..., T], *args: object) -> T:
        """Run CPU-heavy encoding off the event loop."""
        return await anyio.to_thread.run_sync(partial(func, *args))

    def warm_up(self) -> None:
        """One small analysis so the first request does not pay for lazy initialisation."""
        image = np.full((64, 64, 3), 127, dtype=np.uint8)
        self.analyzer.analyze_image(image, samples=min(2, self.settings.max_samples), seed=0)

    async def start(self) -> None:
        """Warm up (if configured) in a worker thread, then report ready.

        A failed warm-up is logged and kept in :attr:`failure`; the service then stays not ready.
        """
        if self.settings.warmup:
            try:
                async with self.limiter:
                    await anyio.to_thread.run_sync(self.warm_up)
            except Exception as exc:
                self.failure = f"warm-up analysis failed: {exc}"
                log.exception("model %s failed its warm-up on %s", self.name, self.device)
                return
        self.ready = True
        log.info("model %s ready on %s", self.name, self.device)
