"""The server's Prometheus metrics, in a registry of their own per app (several apps in one process do not collide).

Requests are counted by route *template* (``/api/v1/analyses/{analysis_id}/maps/{name}.png``, never the raw
path), so the number of series stays bounded whatever clients ask for. Errors are counted by their ``code``
(the common error shape's), which is a closed set. The queue gauges read :class:`~app.web.admission.Admission`
when Prometheus scrapes, so they are never stale.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.engine.cancel import CancelToken
from app.web.admission import Admission
from app.web.settings import env_name

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """Every metric of one app, and the calls that move them.

    Args:
        prefix: Prefix of every metric name.
    """

    def __init__(self, prefix: str = "segu") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{prefix}_http_requests", "HTTP requests answered, by method, route template and status.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            f"{prefix}_http_request_duration_seconds",
            "Seconds from a request's headers to its last response byte, by route.",
            ["route"],
            registry=r,
            buckets=SECONDS_BUCKETS,
        )
        self.rejections = Counter(
            f"{prefix}_rejections",
            "Requests answered with an error, by the error's code (overloaded, too_much_work, body_too_large, ...).",
            ["reason"],
            registry=r,
        )
        self.waiting = Gauge(f"{prefix}_queue_waiting", "Admitted analyses waiting for a running slot.", registry=r)
        self.running = Gauge(f"{prefix}_analyses_running", "Analyses holding a running slot.", registry=r)
        self.work = Gauge(f"{prefix}_admitted_work", "Work units (analysed pixels x (samples + 1)) admitted, running and waiting.", registry=r)
        self.work_budget = Gauge(f"{prefix}_work_budget", f"The most work units admitted at once ({env_name('max_work')}).", registry=r)
        self.queue_wait = Histogram(f"{prefix}_queue_wait_seconds", "Seconds an admitted analysis waited for a running slot.", registry=r, buckets=WAIT_BUCKETS)
        self.batch_size = Histogram(f"{prefix}_batch_size", "Images per model batch.", registry=r, buckets=BATCH_BUCKETS)
        self.inference = Histogram(
            f"{prefix}_inference_seconds",
            "Seconds of one analysis's network passes (deterministic pass and MC samples; no decoding, queueing or encoding).",
            registry=r,
            buckets=SECONDS_BUCKETS,
        )
        self.pixels = Counter(f"{prefix}_pixels_analysed", "Pixels analysed (at the analysed size), finished analyses only.", registry=r)
        self.samples = Counter(f"{prefix}_mc_samples", "MC-dropout samples computed, finished analyses only.", registry=r)
        self.checks = Gauge(
            f"{prefix}_cancellation_checks",
            "Cancellation points passed by every analysis so far, running ones included: it stops growing when no worker computes.",
            registry=r,
        )
        self._running: set[CancelToken] = set()
        self._finished = 0
        self.checks.set_function(lambda: self._finished + sum(token.checks for token in list(self._running)))

    def watch(self, admission: Admission) -> None:
        """Read the queue gauges from ``admission`` at every scrape."""
        self.waiting.set_function(lambda: admission.waiting)
        self.running.set_function(lambda: admission.running)
        self.work.set_function(lambda: admission.work)
        self.work_budget.set(admission.max_work)

    def request(self, method: str, route: str, status: int, seconds: float, error: str | None = None) -> None:
        """Count one answered request; ``error``: its error code, if it was an error in the common shape."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if error is not None:
            self.rejections.labels(error).inc()

    def reject(self, reason: str) -> None:
        """Count a refusal that is no answered request (e.g. a request head that never finished)."""
        self.rejections.labels(reason).inc()

    def batch(self, size: int) -> None:
        """Count one model batch of ``size`` images (the service calls it once per batch it runs)."""
        self.batch_size.observe(size)

    def waited(self, seconds: float) -> None:
        """Count one analysis's wait for a running slot."""
        self.queue_wait.observe(seconds)

    def analysed(self, seconds: float, pixels: int, samples: int) -> None:
        """Count one finished analysis: its time in the worker, its analysed pixels and its MC samples."""
        self.inference.observe(seconds)
        self.pixels.inc(pixels)
        self.samples.inc(samples)

    def running_checks(self, token: CancelToken) -> None:
        """Count ``token``'s cancellation checks while its analysis runs."""
        self._running.add(token)

    def finished_checks(self, token: CancelToken) -> None:
        """``token``'s analysis is over: keep its final count."""
        self._running.discard(token)
        self._finished += token.checks

    def render(self) -> bytes:
        """The registry in Prometheus' text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
