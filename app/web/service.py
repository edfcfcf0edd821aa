"""One served model: every analysis request passes its admission gate, runs under supervision, and is observed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import BinaryIO, TypeVar

import anyio
import anyio.to_thread
import numpy as np
import torch

from app.defaults import TtaMode
from app.engine.analysis import Analysis
from app.engine.cancel import CancelToken
from app.io.bundle import Bundle
from app.request import AnalysisRequest
from app.web.access_log import current_record
from app.web.admission import Admission, Reservation
from app.web.cache import AnalysisCache
from app.web.metrics import Metrics
from app.web.settings import Settings
from app.web.supervision import Disconnected, never_disconnected, supervise
from app.web.uploads import probe_upload, read_upload
from app.web.work_estimate import estimate_work
from app.workflows.analyzer import Analyzer
from app.workflows.batching import PrefixBatcher
from app.workflows.labelled import analyze_labelled

__all__ = ["AnalysisService", "new_cache"]

T = TypeVar("T")
log = logging.getLogger("app.web")


def new_cache(settings: Settings) -> AnalysisCache:
    """The store of kept analyses that ``settings`` describe."""
    return AnalysisCache(settings.cache_entries, settings.cache_bytes, settings.cache_ttl_seconds, id_prefix=settings.analysis_id_prefix)


class AnalysisService:
    """One model instance shared by all requests, behind admission control.

    Every analysis request goes through :meth:`analyze` or :meth:`evaluate`: its work (analysed pixels × passes ×
    (samples + 1), from the upload's header; :mod:`app.web.work_estimate`) is admitted or refused (413/503,
    :mod:`app.web.admission`) before the upload is read; then it waits for a running slot, and in a worker thread reads
    the upload, decodes, analyses and encodes the answer, cancelled at the deadline or when the client leaves
    (:mod:`app.web.supervision`). Dropout masks are seeded per request through a context variable, so concurrent
    analyses do not disturb each other.

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
    def default_tta(self) -> TtaMode:
        """Test-time augmentation of a request that does not say: the card's ``default_tta``, else ``DEFAULT_TTA`` (none)."""
        return self.bundle.card.tta_default()

    async def analyze(
        self, upload: BinaryIO, encode: Callable[[Analysis], T], request: AnalysisRequest, *, disconnected: Disconnected = never_disconnected
    ) -> T:
        """Admit, then read, decode, analyse and ``encode`` an upload inside the gate.

        Raises:
            app.io.decoding.ImageDecodeError: the upload is not a usable image.
            app.web.admission.TooMuchWork: 413, the request alone is over the work budget.
            app.web.admission.Overloaded: 503, no room now.
            ApiError: 504 past the deadline; 499 when the client went away.
        """

        def job(token: CancelToken) -> T:
            analysis = self.analyzer.analyze_bytes(read_upload(upload), request, cancel=token)
            self._analysed(analysis, token)
            return encode(analysis)

        return await self._admitted(upload, request, job, disconnected)

    async def evaluate(
        self,
        upload: BinaryIO,
        mask: BinaryIO,
        encode: Callable[[Analysis, np.ndarray], T],
        request: AnalysisRequest,
        *,
        mask_name: str = "mask",
        disconnected: Disconnected = never_disconnected,
    ) -> T:
        """Like :meth:`analyze`, for an image and its mask (checked to pair up before inference).

        Raises:
            app.io.masks.MaskError: the mask is unusable or does not match the image.
            app.io.decoding.ImageDecodeError, TooMuchWork, Overloaded, ApiError: as :meth:`analyze`.
        """

        def job(token: CancelToken) -> T:
            labelled = analyze_labelled(self.analyzer, read_upload(upload), read_upload(mask), request, mask_name=mask_name, cancel=token)
            self._analysed(labelled.analysis, token)
            return encode(labelled.analysis, labelled.mask)

        return await self._admitted(upload, request, job, disconnected)

    async def _admitted(self, upload: BinaryIO, request: AnalysisRequest, job: Callable[[CancelToken], T], disconnected: Disconnected) -> T:
        self.admission.check_room()
        header = await anyio.to_thread.run_sync(probe_upload, upload, self.settings.max_pixels)
        work = estimate_work(self.analyzer, self.settings.max_work, header.width, header.height, request)
        reservation = self.admission.reserve(work.units, work.describe, work.advice)
        record = current_record()
        record.model, record.samples, record.pixels = self.name, request.samples, work.pixels
        token = CancelToken(deadline=time.monotonic() + self.settings.request_timeout)
        self.metrics.running_checks(token)
        try:
            return await supervise(self.admission, reservation, token, job, disconnected, self._started, self.settings.request_timeout)
        finally:
            self.metrics.finished_checks(token)
            self.admission.release(reservation)

    def _started(self, reservation: Reservation) -> None:
        """Observe an analysis that got its running slot: its wait (its batch is observed by :attr:`batcher` when it runs)."""
        waited = time.monotonic() - reservation.admitted_at
        self.metrics.waited(waited)
        current_record().queue_wait_s = waited

    def _analysed(self, analysis: Analysis, token: CancelToken) -> None:
        """Observe a finished analysis (in its worker thread): network time, analysed pixels, MC samples; then stop here
        if the request was cancelled meanwhile."""
        seconds = analysis.timings.get("inference", 0.0)
        self.metrics.analysed(seconds, int(analysis.prediction.size), analysis.samples)
        current_record().inference_s = seconds
        token.check()

    def warm_up(self) -> None:
        """One small analysis so the first request does not pay for lazy initialisation."""
        image = np.full((64, 64, 3), 127, dtype=np.uint8)
        self.analyzer.analyze_image(image, AnalysisRequest(samples=min(2, self.settings.max_samples), seed=0))

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
