"""The served models by name: one :class:`~app.web.service.AnalysisService` per model, one admission gate and one cache for all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from app.error_codes import ErrorCode
from app.io.bundle import Bundle
from app.web.admission import Admission
from app.web.errors import ApiError
from app.web.metrics import Metrics
from app.web.service import AnalysisService, new_cache, new_jobs
from app.web.settings import Settings, env_name

__all__ = ["ModelServices", "ModelStatus", "check_bundles"]


@dataclass(frozen=True)
class ModelStatus:
    """Where one served model stands: ``ready`` once warmed up; ``failure`` says why it never will be."""

    name: str
    ready: bool
    failure: str | None


def check_bundles(bundles: Sequence[Bundle], settings: Settings) -> None:
    """Refuse bundles that cannot be served together under ``settings``.

    Raises:
        ValueError: no bundle; two bundles with the same card name (requests pick a model by it); a card whose
            ``default_samples`` exceeds ``SEGU_MAX_SAMPLES`` while ``SEGU_DEFAULT_SAMPLES`` is unset.
    """
    if not bundles:
        raise ValueError("no model to serve")
    seen: dict[str, Bundle] = {}
    for bundle in bundles:
        name = bundle.card.name
        if name in seen:
            raise ValueError(
                f"two models are named {name!r} ({seen[name].path} and {bundle.path}): requests choose a model by its name, "
                "so give each bundle's model.json a name of its own"
            )
        seen[name] = bundle
        samples = bundle.card.samples_default()
        if settings.default_samples is None and samples > settings.max_samples:
            raise ValueError(
                f"model {name!r} defaults to {samples} MC samples (its card's default_samples) but {env_name('max_samples')} is {settings.max_samples}: "
                f"raise {env_name('max_samples')} or set {env_name('default_samples')}"
            )


class ModelServices:
    """Every served model's service by name, the first the default.

    The models share one admission gate (running slots, queue and work budget are the machine's, not a model's), one
    store of jobs (:mod:`app.web.jobs`; its :meth:`~app.web.jobs.JobStore.serve` runs in the app's lifespan) and
    one cache of kept analyses (an entry carries its model's classes, so follow-ups by id need no model), so
    ``SEGU_MAX_CONCURRENT``, ``SEGU_MAX_QUEUE`` and ``SEGU_MAX_WORK`` bound all models' requests together.

    Args:
        bundles: The loaded bundles, the default first; their card names must differ (:func:`check_bundles`).
        device: Where they run.
        settings: Limits and defaults.
        metrics: Where queue, batch and analysis figures go; ``None``: a registry of its own.

    Raises:
        ValueError: as :func:`check_bundles`.
    """

    def __init__(self, bundles: Sequence[Bundle], device: torch.device, settings: Settings, metrics: Metrics | None = None) -> None:
        check_bundles(bundles, settings)
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.admission = Admission(settings.max_concurrent, settings.max_queue, settings.max_work)
        self.metrics.watch(self.admission)
        self.cache = new_cache(settings)
        self.jobs = new_jobs(settings)
        self.services = {
            bundle.card.name: AnalysisService(bundle, device, settings, self.metrics, admission=self.admission, cache=self.cache, jobs=self.jobs)
            for bundle in bundles
        }

    @property
    def default(self) -> AnalysisService:
        """The first model's service: requests that name no model get it."""
        return next(iter(self.services.values()))

    @property
    def names(self) -> list[str]:
        """The models' names, the default first."""
        return list(self.services)

    @property
    def ready(self) -> bool:
        """Every model is warmed up."""
        return all(service.ready for service in self.services.values())

    @property
    def failure(self) -> str | None:
        """Why some model will never be ready (its warm-up failed), or ``None``."""
        if len(self.services) == 1:
            return self.default.failure
        failures = [f"model {name}: {service.failure}" for name, service in self.services.items() if service.failure is not None]
        return "; ".join(failures) or None

    def statuses(self) -> list[ModelStatus]:
        """Each model's readiness, the default first."""
        return [ModelStatus(name, service.ready, service.failure) for name, service in self.services.items()]

    def get(self, name: str | None) -> AnalysisService:
        """The service of model ``name`` (``None``: the default), once it is warmed up.

        Raises:
            ApiError: 422 ``unknown_model`` naming the served models; 503 ``not_ready`` while that model warms up.
        """
        service = self.default if name is None else self.services.get(name)
        if service is None:
            raise ApiError(ErrorCode.UNKNOWN_MODEL, f"no model named {name!r} is served here; the models are {', '.join(self.names)}", "model")
        if not service.ready:
            why = service.failure or "it is still warming up; retry in a few seconds (GET /readyz reports when every model is ready)"
            raise ApiError(ErrorCode.NOT_READY, f"model {service.name} is not ready: {why}")
        return service

    async def start(self) -> None:
        """Warm the models up one after the other (they share the machine), each reporting ready when done."""
        for service in self.services.values():
            await service.start()
