"""The shared model and the admission gate every analysis passes through, with its deadline and cancellation."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, BinaryIO, TypeVar

import anyio
import anyio.to_thread
import numpy as np
import torch

from app.engine.analysis import Analysis
from app.engine.augment import tta_plan
from app.engine.cancel import AnalysisCancelled, CancelToken
from app.engine.passes import pass_plan
from app.io.bundle import Bundle
from app.web.access_log import current_record
from app.web.admission import Admission, Reservation
from app.web.cache import AnalysisCache
from app.web.errors import ApiError
from app.web.metrics import Metrics
from app.web.settings import Settings
from app.web.uploads import probe_upload, read_upload
from app.workflows.analyzer import Analyzer, Resolution
from app.workflows.batching import PrefixBatcher
from app.workflows.labelled import analyze_labelled

T = TypeVar("T")
log = logging.getLogger("app.web")

WATCH_SECONDS = 0.1
Disconnected = Callable[[], Awaitable[bool]]


async def _never_disconnected() -> bool:
    return False


def new_cache(settings: Settings) -> AnalysisCache:
    """The store of kept analyses that ``settings`` describe."""
    return AnalysisCache(settings.cache_entries, settings.cache_bytes, settings.cache_ttl_seconds, id_prefix=settings.analysis_id_prefix)


class AnalysisService:
    """One model instance shared by all requests, behind admission control.

    Every analysis request goes through :meth:`analyze` or :meth:`evaluate`: its work (analysed pixels ×
    (samples + 1), from the upload's header) is admitted or refused (413/503, :mod:`app.web.admission`)
    before the upload is read; then it waits for a running slot, and in a worker thread reads the upload,
    decodes, analyses and encodes the answer. A watcher on the event loop cancels the work cooperatively
    (:mod:`app.engine.cancel`) once ``request_timeout`` has passed since the request was admitted (→ 504)
    or the client has gone away, while it waits and while it runs. Dropout masks are seeded per request
    through a context variable, so concurrent analyses do not disturb each other.

    Args:
        bundle: The loaded model bundle.
        device: Where to run it.
        settings: Limits and defaults.
        metrics: Where queue, batch and analysis figures go (:mod:`app.web.metrics`); ``None``: a registry of its own.
        admission: The gate, when it is shared with other models' services (:mod:`app.web.services`); ``None``: a gate of its
            own, watched by ``metrics``.
        cache: The store of kept analyses, when shared; ``None``: one of its own.
    """

    def __init__(
        self,
        bundle: Bundle,
        device: torch.device,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        admission: Admission | None = None,
        cache: AnalysisCache | None = None,
    ) -> None:
        self.bundle = bundle
        self.device = device
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        if admission is None:
            admission = Admission(settings.max_concurrent, settings.max_queue, settings.max_work)
            self.metrics.watch(admission)
        self.admission = admission
        self.cache = cache if cache is not None else new_cache(settings)
        batch = min(settings.max_batch_size, settings.max_concurrent)  # batched analyses each hold a running slot
        self.batcher = PrefixBatcher(bundle.net, batch, settings.max_wait_ms / 1000, observe=self.metrics.batch)
        self.analyzer = Analyzer(bundle, device, max_pixels=settings.max_pixels, memory_budget=settings.memory_budget, batcher=self.batcher)
        self.ready = False
        self.failure: str | None = None
        self._tokens: set[CancelToken] = set()
        self._finished_checks = 0

    @property
    def name(self) -> str:
        """The model's name."""
        return self.bundle.card.name

    @property
    def default_samples(self) -> int:
        """MC samples of a request that does not say: ``SEGU_DEFAULT_SAMPLES`` when set, else the card's (else ``DEFAULT_SAMPLES``)."""
        if self.settings.default_samples is not None:
            return self.settings.default_samples
        return self.bundle.card.samples_default()

    @property
    def checkpoints(self) -> int:
        """Cancellation points passed by every analysis so far (running ones included): a measure of work done."""
        return self._finished_checks + sum(token.checks for token in list(self._tokens))

    def work(self, width: int, height: int, samples: int, resolution: Resolution, tta: str = "none") -> tuple[int, str, str]:
        """The work of analysing a ``width × height`` upload, that work in words, and what would make it fit the budget.

        Work is analysed pixels × passes × (samples + 1): every pass (ensemble member × test-time augmentation,
        :mod:`app.engine.passes`) runs its deterministic pass and its ``samples`` MC samples.
        """
        rows, cols = self.analyzer.analysed_shape(height, width, resolution)
        pixels = rows * cols
        passes = pass_plan(self.bundle.net, tta, samples).passes
        per_pass = f" x {passes} passes" if passes > 1 else ""
        describe = f"{cols}x{rows} analysed pixels ({resolution} resolution of a {width}x{height} image){per_pass} x ({samples} samples + 1)"
        advice = []
        fitting = self.settings.max_work // (pixels * passes) - 1
        if 0 <= fitting < samples:
            advice.append(f"samples={fitting}" + (" or fewer" if fitting else ""))
        if tta != "none" and pixels * (passes // len(tta_plan(tta, 0))) * (samples + 1) <= self.settings.max_work:
            advice.append("tta=none")
        if resolution == "full" and self.analyzer.analysed_shape(height, width, "working") != (rows, cols):
            advice.append("resolution=working")
        advice.append("a smaller image")
        return pixels * passes * (samples + 1), describe, "send " + ", ".join(advice[:-1]) + (" or " if len(advice) > 1 else "") + advice[-1]

    async def analyze(
        self,
        upload: BinaryIO,
        encode: Callable[[Analysis], T],
        *,
        samples: int | None,
        seed: int,
        calibrated: bool,
        resolution: Resolution = "working",
        disconnected: Disconnected = _never_disconnected,
        tta: str = "none",
    ) -> T:
        """Admit, then read, decode, analyse and ``encode`` an upload inside the gate; ``samples=None``: :attr:`default_samples`.

        Raises:
            app.io.decoding.ImageDecodeError: the upload is not a usable image.
            app.web.admission.TooMuchWork: 413, the request alone is over the work budget.
            app.web.admission.Overloaded: 503, no room now.
            ApiError: 504 past the deadline; 499 when the client went away.
        """

        samples = self.default_samples if samples is None else samples

        def job(token: CancelToken) -> T:
            analysis = self.analyzer.analyze_bytes(read_upload(upload), **self._options(token, samples, seed, calibrated, resolution, tta))
            self._analysed(analysis, token)
            return encode(analysis)

        return await self._admitted(upload, samples, resolution, job, disconnected, tta)

    async def evaluate(
        self,
        upload: BinaryIO,
        mask: BinaryIO,
        encode: Callable[[Analysis, np.ndarray], T],
        *,
        samples: int | None,
        seed: int,
        calibrated: bool,
        mask_name: str = "mask",
        resolution: Resolution = "working",
        disconnected: Disconnected = _never_disconnected,
        tta: str = "none",
    ) -> T:
        """Like :meth:`analyze`, for an image and its mask (checked to pair up before inference).

        Raises:
            app.io.masks.MaskError: the mask is unusable or does not match the image.
            app.io.decoding.ImageDecodeError, TooMuchWork, Overloaded, ApiError: as :meth:`analyze`.
        """

        samples = self.default_samples if samples is None else samples

        def job(token: CancelToken) -> T:
            options = self._options(token, samples, seed, calibrated, resolution, tta)
            labelled = analyze_labelled(self.analyzer, read_upload(upload), read_upload(mask), mask_name=mask_name, **options)
            self._analysed(labelled.analysis, token)
            return encode(labelled.analysis, labelled.mask)

        return await self._admitted(upload, samples, resolution, job, disconnected, tta)

    async def _admitted(
        self, upload: BinaryIO, samples: int, resolution: Resolution, job: Callable[[CancelToken], T], disconnected: Disconnected, tta: str = "none"
    ) -> T:
        self.admission.check_room()
        header = await anyio.to_thread.run_sync(probe_upload, upload, self.settings.max_pixels)
        work, describe, advice = self.work(header.width, header.height, samples, resolution, tta)
        reservation = self.admission.reserve(work, describe, advice)
        record = current_record()
        record.model, record.samples, record.pixels = self.name, samples, work // (pass_plan(self.bundle.net, tta, samples).passes * (samples + 1))
        token = CancelToken(deadline=time.monotonic() + self.settings.request_timeout)
        self._tokens.add(token)
        try:
            return await self._supervised(reservation, token, job, disconnected)
        finally:
            self._tokens.discard(token)
            self._finished_checks += token.checks
            self.admission.release(reservation)

    async def _supervised(self, reservation: Reservation, token: CancelToken, job: Callable[[CancelToken], T], disconnected: Disconnected) -> T:
        outcome: list[T] = []
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            waiting = anyio.CancelScope()
            tg.start_soon(self._watch, token, disconnected, waiting)
            try:
                with waiting:
                    await self.admission.acquire(reservation)
                if reservation.running:
                    self._started(reservation)
                    outcome.append(await anyio.to_thread.run_sync(job, token))
            except Exception as exc:
                failure = exc
            finally:
                tg.cancel_scope.cancel()
        if outcome:
            return outcome[0]
        if failure is not None and not isinstance(failure, AnalysisCancelled):
            raise failure
        if token.reason == "deadline":
            raise ApiError(
                504,
                "timeout",
                f"the analysis did not finish within the server's limit of {self.settings.request_timeout:g} s (SEGU_REQUEST_TIMEOUT) "
                "and was stopped; use fewer samples, resolution=working or a smaller image, or retry when the server is less busy",
            )
        raise ApiError(499, "client_disconnected", "the client closed the connection; the analysis was stopped")

    def _started(self, reservation: Reservation) -> None:
        """Observe an analysis that got its running slot: its wait (its batch is observed by :attr:`batcher` when it runs)."""
        waited = time.monotonic() - reservation.admitted_at
        self.metrics.waited(waited)
        current_record().queue_wait_s = waited

    def _options(self, token: CancelToken, samples: int, seed: int, calibrated: bool, resolution: Resolution, tta: str) -> dict[str, Any]:
        """The analyzer's keyword arguments of one request (shared by analyze and evaluate)."""
        return {
            "samples": samples,
            "seed": seed,
            "calibrated": calibrated,
            "min_area": self.settings.min_area,
            "resolution": resolution,
            "cancel": token,
            "tta": tta,
        }

    def _analysed(self, analysis: Analysis, token: CancelToken) -> None:
        """Observe a finished analysis (in its worker thread): network time, analysed pixels, MC samples; then stop here
        if the request was cancelled meanwhile."""
        seconds = analysis.timings.get("inference", 0.0)
        self.metrics.analysed(seconds, int(analysis.prediction.size), analysis.samples)
        current_record().inference_s = seconds
        token.check()

    @staticmethod
    async def _watch(token: CancelToken, disconnected: Disconnected, waiting: anyio.CancelScope) -> None:
        """Cancel ``token`` (and stop ``waiting``) once the deadline passes or the client goes away."""
        try:
            while not token.expired():
                if await disconnected():
                    token.cancel("disconnected")
                    break
                await anyio.sleep(WATCH_SECONDS)
            waiting.cancel()
        finally:
            token.cancel("abandoned")

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
                await anyio.to_thread.run_sync(self.warm_up)
            except Exception as exc:
                self.failure = f"warm-up analysis failed: {exc}"
                log.exception("model %s failed its warm-up on %s", self.name, self.device)
                return
        self.ready = True
        log.info("model %s ready on %s", self.name, self.device)
