"""One served model: every analysis request passes its admission gate, runs under supervision, and is observed."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

import anyio
import anyio.to_thread
import numpy as np
import torch

from app.defaults import DEFAULT_SAMPLES, TtaMode
from app.engine.analysis import Analysis
from app.engine.cancel import CancelToken
from app.error_codes import ErrorCode
from app.io.bundle import Bundle
from app.io.decoding import ImageHeader, probe_image
from app.request import AnalysisRequest
from app.web.access_log import current_record
from app.web.admission import Admission, Overloaded, Reservation, TooMuchWork
from app.web.cache import AnalysisCache
from app.web.errors import ApiError
from app.web.jobs import Answer, Job, JobKind, JobMode, JobStore, failure_of
from app.web.metrics import Metrics
from app.web.settings import Settings, env_name
from app.web.supervision import Disconnected, never_disconnected, supervise
from app.web.tiled_uploads import analyse_tiled, reading_units, spooled_copy
from app.web.uploads import probe_upload, read_upload
from app.web.work_estimate import WorkEstimate, estimate_work
from app.workflows.adversarial import AttackTooLarge, check_attack_size
from app.workflows.analyzer import Analyzer
from app.workflows.batching import PrefixBatcher
from app.workflows.labelled import analyze_labelled
from app.workflows.stream_analysis import analyze_to_store

__all__ = ["JOB_POLL_SECONDS", "AnalysisService", "new_cache", "new_jobs"]

log = logging.getLogger("app.web")
JOB_POLL_SECONDS = 0.1
Work = Callable[[CancelToken, Sequence[BinaryIO], ImageHeader], Answer]


def new_cache(settings: Settings) -> AnalysisCache:
    """The store of kept analyses that ``settings`` describe."""
    return AnalysisCache(
        settings.cache_entries, settings.cache_bytes, settings.cache_ttl_seconds, id_prefix=settings.analysis_id_prefix, store_root=settings.store_dir
    )


def new_jobs(settings: Settings) -> JobStore:
    """The store of long analyses (jobs) that ``settings`` describe."""
    return JobStore(settings.max_jobs, settings.job_ttl_seconds, id_prefix=settings.analysis_id_prefix)


class AnalysisService:
    """One model instance shared by all requests, behind admission control.

    Every analysis request goes through :meth:`analyze` or :meth:`evaluate`: its work (analysed pixels × passes ×
    (samples + 1), from the upload's header; :mod:`app.web.work_estimate`) is admitted or refused (413/503,
    :mod:`app.web.admission`) before the upload is read; then it waits for a running slot, and in a worker thread reads
    the upload, decodes, analyses and encodes the answer, cancelled at the deadline or when the client leaves
    (:mod:`app.web.supervision`). Dropout masks are seeded per request through a context variable, so concurrent
    analyses do not disturb each other.

    A request over the work budget (``SEGU_MAX_WORK``) that fits a job's (``SEGU_MAX_JOB_WORK``, ``SEGU_MAX_JOB_PIXELS``) runs
    as a job instead (``mode="auto"``; ``"job"`` always, ``"sync"`` never; :mod:`app.web.jobs`): its upload is read at once,
    the caller gets the :class:`~app.web.jobs.Job`, and in the background it waits for room in the same gate (taking at most
    the whole budget), runs under ``SEGU_JOB_TIMEOUT`` with progress, and keeps its answer.

    Args:
        bundle: The loaded model bundle.
        device: Where to run it.
        settings: Limits and defaults.
        metrics: Where queue, batch and analysis figures go (:mod:`app.web.metrics`); ``None``: a registry of its own.
        admission: The gate, when it is shared with other models' services (:mod:`app.web.services`); ``None``: a gate of its
            own, watched by ``metrics``.
        cache: The store of kept analyses, when shared; ``None``: one of its own.
        jobs: The store of jobs, when shared; ``None``: one of its own (its :meth:`~app.web.jobs.JobStore.serve` must run for
            jobs to be accepted).
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
        jobs: JobStore | None = None,
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
        self.jobs = jobs if jobs is not None else new_jobs(settings)
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
        self,
        upload: BinaryIO,
        encode: Callable[[Analysis], Answer],
        request: AnalysisRequest,
        *,
        disconnected: Disconnected = never_disconnected,
        mode: JobMode = "sync",
    ) -> Answer | Job:
        """Admit, then read, decode, analyse and ``encode`` an upload inside the gate; or accept it as a job (``mode``).

        Raises:
            app.io.decoding.ImageDecodeError: the upload is not a usable image.
            app.web.admission.TooMuchWork: 413, the request alone is over the work budget (a job's, unless ``mode="sync"``).
            app.web.admission.Overloaded: 503, no room now (or no room for another job).
            ApiError: 504 past the deadline; 499 when the client went away.
        """

        def work(token: CancelToken, files: Sequence[BinaryIO], header: ImageHeader) -> Answer:
            analysis = self._analyse_upload(files[0], header, request, token)
            try:
                self._analysed(analysis, token)
                return encode(analysis)
            finally:
                if analysis.stored is not None and not self.cache.holds(analysis.stored.path):
                    shutil.rmtree(analysis.stored.path, ignore_errors=True)

        return await self._admitted([upload], request, work, disconnected, mode, "analyze")

    def _analyse_upload(self, upload: BinaryIO, header: ImageHeader, request: AnalysisRequest, token: CancelToken) -> Analysis:
        """Analyse an upload whose ``header`` was probed before admission: a tiled TIFF beyond the decode limit tile by tile
        (:mod:`app.web.tiled_uploads`), else its bytes."""
        if header.tiled:
            return analyse_tiled(self.analyzer, upload, request, self.cache.new_store(), self.settings.max_tiled_pixels, token)
        return self._analyse(read_upload(upload), request, token)

    def _analyse(self, data: bytes, request: AnalysisRequest, token: CancelToken) -> Analysis:
        """Decode and analyse ``data``: in memory, or at full resolution beyond ``stream_pixels`` streamed to a store in the
        cache's folder (:func:`app.workflows.stream_analysis.analyze_to_store`, keeping ``mean_probs`` for the pixel readout)."""
        if request.resolution == "full":
            header = probe_image(data, self.settings.max_pixels)
            if header.width * header.height > self.settings.stream_pixels:
                started = time.perf_counter()
                rgb = self.analyzer.decode(data, cancel=token)
                decoded = time.perf_counter() - started
                path = self.cache.new_store()
                try:
                    analysis = analyze_to_store(self.analyzer, rgb, request, path, ("mean_probs",), cancel=token)
                except BaseException:
                    shutil.rmtree(path, ignore_errors=True)
                    raise
                analysis.timings["decode"] = decoded
                return analysis
        return self.analyzer.analyze_bytes(data, request, cancel=token)

    async def evaluate(
        self,
        upload: BinaryIO,
        mask: BinaryIO,
        encode: Callable[[Analysis, np.ndarray], Answer],
        request: AnalysisRequest,
        *,
        mask_name: str = "mask",
        disconnected: Disconnected = never_disconnected,
        mode: JobMode = "sync",
    ) -> Answer | Job:
        """Like :meth:`analyze`, for an image and its mask (checked to pair up before inference).

        Raises:
            app.io.masks.MaskError: the mask is unusable or does not match the image.
            app.io.decoding.ImageDecodeError, TooMuchWork, Overloaded, ApiError: as :meth:`analyze`.
        """

        def work(token: CancelToken, files: Sequence[BinaryIO], _header: ImageHeader) -> Answer:
            labelled = analyze_labelled(self.analyzer, read_upload(files[0]), read_upload(files[1]), request, mask_name=mask_name, cancel=token)
            self._analysed(labelled.analysis, token)
            return encode(labelled.analysis, labelled.mask)

        return await self._admitted([upload, mask], request, work, disconnected, mode, "evaluate")

    async def _admitted(
        self, uploads: Sequence[BinaryIO], request: AnalysisRequest, work: Work, disconnected: Disconnected, mode: JobMode, kind: JobKind
    ) -> Answer | Job:
        if mode == "sync":
            self.admission.check_room()
        tiled_limit = self.settings.max_tiled_pixels if kind == "analyze" else 0
        header = await anyio.to_thread.run_sync(probe_upload, uploads[0], self.settings.max_pixels, tiled_limit)
        decoded = None if header.tiled else header
        estimate = estimate_work(
            self.analyzer, self.settings.max_work, header.width, header.height, request, decoded, reading_units(header, request.resolution)
        )
        if request.adversarial:
            try:
                check_attack_size(*self.analyzer.analysed_shape(header.height, header.width, request.resolution))
            except AttackTooLarge as exc:
                raise TooMuchWork(str(exc)) from exc
        record = current_record()
        record.model, record.samples, record.pixels = self.name, request.samples, estimate.pixels
        if self._as_job(estimate, mode, header, request):
            return await self._submit(uploads, header, estimate, work, kind)
        advice = estimate.advice
        if mode == "sync" and self.jobs.enabled and self._job_refusal(estimate, header, request) is None:
            advice += ", or mode=auto to run it as a job (202) with progress"
        reservation = self.admission.reserve(estimate.units, estimate.describe, advice)
        token = CancelToken(deadline=time.monotonic() + self.settings.request_timeout)
        self.metrics.running_checks(token)
        try:
            return await supervise(
                self.admission, reservation, token, lambda t: work(t, uploads, header), disconnected, self._started, self.settings.request_timeout
            )
        finally:
            self.metrics.finished_checks(token)
            self.admission.release(reservation, self.admission.held_seconds(reservation))

    def _job_refusal(self, estimate: WorkEstimate, header: ImageHeader, request: AnalysisRequest) -> str | None:
        """Why no job can hold this request (its 413 message), or ``None`` when one can. A tiled TIFF's pixels are bounded
        by ``max_tiled_pixels`` (its memory by one band of windows), not by ``max_job_pixels``."""
        settings = self.settings
        width, height = header.width, header.height
        if estimate.units > settings.max_job_work:
            advice = estimate_work(self.analyzer, settings.max_job_work, width, height, request).advice
            return (
                f"{estimate.describe} = {estimate.units:,} units of work, more than a job may take ({settings.max_job_work:,}, "
                f"{env_name('max_job_work')}); {advice}"
            )
        if estimate.pixels > settings.max_job_pixels and not header.tiled:
            return (
                f"{estimate.describe}: {estimate.pixels:,} analysed pixels, more than a job may analyse ({settings.max_job_pixels:,}, "
                f"{env_name('max_job_pixels')}); send resolution=working or a smaller image"
            )
        return None

    def _as_job(self, estimate: WorkEstimate, mode: JobMode, header: ImageHeader, request: AnalysisRequest) -> bool:
        """Whether the request runs as a job: ``mode="job"``, or ``"auto"`` and over the synchronous budget (jobs enabled).

        Raises:
            TooMuchWork: 413, it should run as a job but no job can hold it.
            ApiError: 422, ``mode="job"`` while jobs are off (``SEGU_MAX_JOBS`` = 0).
        """
        if mode == "sync" or (mode == "auto" and (estimate.units <= self.settings.max_work or not self.jobs.enabled)):
            return False
        if not self.jobs.enabled:
            raise ApiError(ErrorCode.VALIDATION_ERROR, f"mode: this server runs no jobs ({env_name('max_jobs')} = 0); send mode=auto or sync", "mode")
        refusal = self._job_refusal(estimate, header, request)
        if refusal is not None:
            raise TooMuchWork(refusal)
        return True

    async def _submit(self, uploads: Sequence[BinaryIO], header: ImageHeader, estimate: WorkEstimate, work: Work, kind: JobKind) -> Job:
        """Accept the request as a job: read its uploads now (the request's files close when it is answered), then run it in the background."""
        self.jobs.check_room()
        copies = [await anyio.to_thread.run_sync(spooled_copy, upload) for upload in uploads]

        async def run(job: Job) -> None:
            try:
                await self._run_job(job, estimate, lambda token: work(token, copies, header))
            finally:
                for copy in copies:
                    copy.close()

        return self.jobs.submit(kind, self.name, estimate.units, estimate.describe, run)

    async def _run_job(self, job: Job, estimate: WorkEstimate, work: Callable[[CancelToken], Answer]) -> None:
        """Wait (jobs first come, first served) until the gate admits the job, taking at most the whole budget; run it; keep its outcome."""
        token = job.token
        reservation: Reservation | None = None
        async with self.jobs.turn:
            while reservation is None:
                if token.reason is not None:
                    job.mark("cancelled")
                    return
                try:
                    reservation = self.admission.reserve(min(estimate.units, self.settings.max_work), estimate.describe, estimate.advice)
                except Overloaded:
                    await job.wait_change(JOB_POLL_SECONDS)
        token.deadline = time.monotonic() + self.settings.job_timeout

        def started(reservation: Reservation) -> None:
            job.mark("running")
            self._started(reservation)

        self.metrics.running_checks(token)
        try:
            answer = await supervise(self.admission, reservation, token, work, never_disconnected, started, self.settings.job_timeout, "job_timeout")
        except Exception as exc:
            if token.reason in ("cancelled", "shutdown"):
                job.mark("cancelled")
            else:
                job.mark("failed", error=failure_of(exc))
        else:
            job.mark("done", answer=answer)
        finally:
            self.metrics.finished_checks(token)
            self.admission.release(reservation, self.admission.held_seconds(reservation))

    def _started(self, reservation: Reservation) -> None:
        """Observe an analysis that got its running slot: its wait (its batch is observed by :attr:`batcher` when it runs)."""
        started = reservation.started_at if reservation.started_at is not None else self.admission.clock()
        waited = started - reservation.admitted_at
        self.metrics.waited(waited)
        current_record().queue_wait_s = waited

    def _analysed(self, analysis: Analysis, token: CancelToken) -> None:
        """Observe a finished analysis (in its worker thread): network time, analysed pixels, MC samples; then stop here
        if the request was cancelled meanwhile."""
        seconds = analysis.timings.get("inference", 0.0)
        self.metrics.analysed(seconds, analysis.height * analysis.width, analysis.samples)
        current_record().inference_s = seconds
        token.check()

    def warm_up(self) -> None:
        """One analysis at the default sample count, so the first request pays neither for lazy initialisation nor
        for compiling the default estimator's kernels (seconds on a CPU; measured 4.4 s on the first request without it).

        At 256×192, a photo's working size: the kernels compile for any size but a size of 1, which the compiler
        fixes; a 64×64 warm-up left blocks of one pixel and the first photo recompiled (5.9 s).
        """
        image = np.full((192, 256, 3), 127, dtype=np.uint8)
        self.analyzer.analyze_image(image, AnalysisRequest(samples=min(DEFAULT_SAMPLES, self.settings.max_samples), seed=0))

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
