"""Image → :class:`~app.engine.analysis.Analysis`: the one path the page, the REST API and the CLI share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from app.defaults import DEFAULT_ESTIMATOR, DEFAULT_RESOLUTION, MAX_PIXELS, MEMORY_BUDGET, RESOLUTIONS, Estimator, Resolution, TtaMode
from app.engine.analysis import Analysis, ClassArrays
from app.engine.cancel import CancelToken, checkpoint
from app.engine.free_memory import release_free_memory
from app.engine.geometry import crop
from app.engine.passes import network_cost, pass_plan, plan_cost
from app.engine.rb_head import draw_count
from app.engine.sampling import SamplingOptions
from app.engine.sliding_window import TileGrid, analyse_rgb, plan_grid
from app.engine.tile_budget import TileCost, choose_tile
from app.io.bundle import Bundle
from app.io.card import FeatureDensityInfo
from app.io.decoding import Decoded, decode_image, decode_resized
from app.io.ensemble import ENSEMBLE_KIND
from app.io.resize import resize_rgb, working_shape
from app.maps.mc_error import mean_errors
from app.maps.regions import region_table
from app.maps.registry import map_ranges
from app.metrics.conformal import TYPICALITY, Component, ImageCheck, check_image, component_values, not_checked
from app.metrics.image_ood import ImageOodResult, ImageTypicality, image_verdicts, typicality_verdict
from app.request import AnalysisRequest
from app.workflows.adversarial import adversarial_maps, check_attack_size
from app.workflows.batching import PrefixBatcher
from app.workflows.prediction_sets import prediction_sets, sizes_from_probs

__all__ = ["DEFAULT_REQUEST", "Analyzer"]

DEFAULT_REQUEST = AnalysisRequest()


class Analyzer:
    """Runs a loaded bundle on images.

    Args:
        bundle: The model bundle (its network is moved to ``device``).
        device: Where to run.
        max_pixels: Pixel limit for decoded images.
        memory_budget: Bytes one analysis may use, the network's activations included: larger images
            are analysed in sliding windows (see :mod:`app.engine.tile_budget`).
        batcher: Runs the deterministic prefix of images analysed whole, batched with concurrent analyses'
            (:mod:`app.workflows.batching`); ``None``: every analysis runs its own.
        estimator: How images analysed whole estimate the sampled maps (:data:`~app.defaults.DEFAULT_ESTIMATOR`:
            Rao–Blackwellised where the head allows); sliding-window analyses always sample.
    """

    def __init__(
        self,
        bundle: Bundle,
        device: torch.device | str = "cpu",
        max_pixels: int = MAX_PIXELS,
        memory_budget: int = MEMORY_BUDGET,
        *,
        batcher: PrefixBatcher | None = None,
        estimator: Estimator = DEFAULT_ESTIMATOR,
    ) -> None:
        self.bundle = bundle
        self.estimator = estimator
        self.device = torch.device(device)
        self.bundle.net.to(self.device).eval()
        self.max_pixels = max_pixels
        self.memory_budget = memory_budget
        self.batcher = batcher
        self._cost: TileCost | None = None
        self._typical: tuple[FeatureDensityInfo, ImageTypicality] | None = None
        # The feature-distance typicality's percentile is listed with the maps' (image_ood); the verdict itself is the one
        # conformal test of the card's image_test (image_check), which counts the typicality among its components.
        self.typicality_verdict = True
        self._cost_lock = threading.Lock()

    @property
    def unavailable(self) -> tuple[str, ...]:
        """Maps this bundle cannot compute (its analyses carry them as zeros): ``feature_distance`` without a fitted feature density."""
        return () if self.bundle.density is not None else ("feature_distance",)

    @property
    def cost(self) -> TileCost:
        """The network's bytes per analysed pixel (an ensemble's: its costliest member's), probed on first use."""
        with self._cost_lock:
            if self._cost is None:
                self._cost = network_cost(self.bundle.net, len(self.bundle.card.classes))
            return self._cost

    def analysed_shape(self, height: int, width: int, resolution: Resolution = DEFAULT_RESOLUTION) -> tuple[int, int]:
        """The ``(H, W)`` an input of ``height × width`` is analysed at."""
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
        return working_shape(height, width, self.bundle.card.input.working_size) if resolution == "working" else (height, width)

    def tile_grid(self, height: int, width: int) -> TileGrid | None:
        """The sliding-window tiles an analysed ``height × width`` image gets (``None``: analysed whole)."""
        stride = self.bundle.net.stride
        hp, wp = height + (-height) % stride, width + (-width) % stride
        tile = choose_tile(hp, wp, self.cost, self.memory_budget, stride)
        return None if tile is None else plan_grid(hp, wp, tile, stride)

    def decode(self, data: bytes, *, cancel: CancelToken | None = None) -> np.ndarray:
        """Decode upload bytes to ``(H, W, 3)`` uint8 RGB within this analyser's pixel limit.

        Raises:
            app.io.decoding.ImageDecodeError: the bytes are not a usable image.
            app.engine.cancel.AnalysisCancelled: ``cancel`` was cancelled during the decode.
        """
        return decode_image(data, self.max_pixels, cancel=cancel)

    def decode_for(self, data: bytes, request: AnalysisRequest = DEFAULT_REQUEST, *, cancel: CancelToken | None = None) -> Decoded:
        """Decode upload bytes for an analysis as ``request`` asks, and the size of the whole stored image.

        At ``"working"`` resolution the image is decoded straight to its analysed size
        (:func:`~app.io.decoding.decode_resized`: a large JPEG reduced by libjpeg first); at ``"full"`` it is decoded whole.
        Pass the size on as :meth:`analyze_image`'s ``input_size``.

        Raises:
            app.io.decoding.ImageDecodeError: the bytes are not a usable image.
            app.engine.cancel.AnalysisCancelled: ``cancel`` was cancelled during the decode (between blocks of the file).
        """
        if request.resolution == "working":
            return decode_resized(data, lambda rows, cols: self.analysed_shape(rows, cols, "working"), self.max_pixels, cancel=cancel)
        rgb = self.decode(data, cancel=cancel)
        return Decoded(rgb, (int(rgb.shape[0]), int(rgb.shape[1])))

    def analyze_bytes(self, data: bytes, request: AnalysisRequest = DEFAULT_REQUEST, *, cancel: CancelToken | None = None) -> Analysis:
        """Decode ``data`` (:meth:`decode_for`) and analyse it as :meth:`analyze_image` does; its ``input_size`` is that of the
        whole stored image."""
        start = time.perf_counter()
        rgb, size = self.decode_for(data, request, cancel=cancel)
        decoded = time.perf_counter() - start
        result = self.analyze_image(rgb, request, cancel=cancel, input_size=size)
        result.timings["decode"] = decoded
        return result

    def analyze_image(
        self,
        rgb: np.ndarray,
        request: AnalysisRequest = DEFAULT_REQUEST,
        *,
        cancel: CancelToken | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> Analysis:
        """Analyse ``(H, W, 3)`` uint8 RGB as ``request`` asks.

        At ``"working"`` resolution an input whose long side exceeds the card's ``input.working_size``
        is first down-scaled (Lanczos, antialiased) to that long side; smaller inputs, and every input
        at ``"full"``, are analysed pixel for pixel. Either way an image whose analysis would not fit
        the memory budget is analysed in sliding windows. The analysis reports what was done:
        ``resolution="working"`` only when the image was resized, ``input_size`` the size of ``rgb`` (or the one given),
        and its maps and ``image`` are at the analysed size. With an ensemble bundle every member runs
        every test-time augmentation, ``request.samples`` MC samples each (:mod:`app.engine.passes`).

        Args:
            rgb: The image.
            request: Samples, seed, temperature, resolution, augmentation, region size, chunking and whether the ``(C, H, W)``
                arrays are kept (``class_arrays``).
            cancel: Checked before and after resizing, between sample chunks and tiles, and before the
                region table (see :mod:`app.engine.cancel`).
            input_size: ``(H, W)`` of the image ``rgb`` was decoded from, when it was decoded already resized to its
                analysed size (:meth:`analyze_bytes`); ``None``: ``rgb``'s own.

        With ``request.adversarial`` the analysed image is also attacked (:mod:`app.workflows.adversarial`; the analysis's
        ``adversarial``).

        Raises:
            app.engine.cancel.AnalysisCancelled: ``cancel`` was cancelled.
            app.workflows.adversarial.AttackTooLarge: an attack was asked for on more than
                :data:`~app.defaults.ADVERSARIAL_MAX_PIXELS` analysed pixels (before anything runs).
        """
        card = self.bundle.card
        net = self.bundle.net
        samples, seed, tta = request.samples, request.seed, request.tta
        plan = pass_plan(net, tta, samples, seed)
        temperature = card.temperature if request.calibrated else 1.0
        input_size = input_size or (int(rgb.shape[0]), int(rgb.shape[1]))
        checkpoint(cancel)
        shape = self.analysed_shape(*input_size, resolution=request.resolution)
        if request.adversarial:
            check_attack_size(*shape)
        start = time.perf_counter()
        analysed = resize_rgb(rgb, shape)
        resized = time.perf_counter() - start
        checkpoint(cancel)
        start = time.perf_counter()
        runner = self._prefix_runner(analysed.shape[0], analysed.shape[1], cancel, plan.passes)
        options = SamplingOptions(
            samples=samples,
            seed=seed,
            temperature=temperature,
            chunk_size=request.chunk_size,
            memory_budget=self.memory_budget,
            cancel=cancel,
            prefix_runner=runner,
            tta=tta,
            density=self.bundle.density,
            estimator=self.estimator if self.tile_grid(int(analysed.shape[0]), int(analysed.shape[1])) is None else "sampled",
        )
        norm = card.normalization
        classes = len(card.classes)
        card_sets = card.conformal_sets
        thresholds = [level.threshold for level in card_sets.levels] if card_sets is not None else []
        result, _grid = analyse_rgb(net, analysed, norm.mean, norm.std, classes, options, plan_cost(self.cost, plan), request.class_arrays, thresholds)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        inference = time.perf_counter() - start
        if _grid is not None:
            release_free_memory()  # the tiles' buffers, before the region table and the outputs add theirs
        size = (int(analysed.shape[0]), int(analysed.shape[1]))

        def host(t: torch.Tensor) -> np.ndarray:
            return crop(t[0], size).cpu().numpy()

        sets = None
        if card_sets is not None and result.set_sizes is not None:
            sizes = {level.alpha: crop(result.set_sizes[0, i], size).numpy() for i, level in enumerate(card_sets.levels)}
            sets = prediction_sets(card_sets, sizes, plan.method, samples, temperature)
        elif card_sets is not None and result.mean_probs.shape[-1] > 0:
            sets = prediction_sets(card_sets, sizes_from_probs(card_sets, result.mean_probs, size), plan.method, samples, temperature)
        maps = {name: np.ascontiguousarray(host(t), dtype=np.float32) for name, t in result.scalar_maps().items()}
        prediction = np.ascontiguousarray(host(result.prediction), dtype=np.int64)
        checkpoint(cancel)
        start = time.perf_counter()
        replicates = {name: np.ascontiguousarray(host(t)) for name, t in result.replicates.items()} if result.replicates else None
        random_draws = result.samples if plan.random else 0
        sure = sets.sizes[sets.default_alpha] == 1 if sets is not None else None
        regions = region_table(prediction, maps, self.bundle.class_names, min_area=request.min_area, replicates=replicates, samples=random_draws, sure=sure)
        image_replicates = {name: r.mean(axis=(1, 2), dtype=np.float64) for name, r in replicates.items()} if replicates else None
        errors = mean_errors(maps, image_replicates, random_draws, result.error_bound)
        means = {k: float(v.mean(dtype=np.float64)) for k, v in maps.items()}
        verdicts, image_check = self.image_verdicts(means, float(maps["feature_distance"].std(dtype=np.float64)), request)
        regions_seconds = time.perf_counter() - start
        adversarial = adversarial_maps(self.bundle, analysed, request, self.device, cancel=cancel) if request.adversarial else None
        timings = {"resize": resized, "inference": inference, "regions": regions_seconds}
        if adversarial is not None:
            timings["adversarial"] = adversarial.seconds
        return Analysis(
            image=analysed,
            prediction=prediction,
            maps=maps,
            class_arrays=ClassArrays(host(result.probs), host(result.mean_probs), host(result.class_variance)) if request.class_arrays else None,
            num_classes=classes,
            ranges=map_ranges(len(card.classes)),
            regions=regions,
            samples=samples,
            seed=seed,
            temperature=temperature,
            calibrated=request.calibrated,
            device=str(self.device),
            dropout_added_at_inference=not card.dropout.trained_with_dropout,
            timings=timings,
            input_size=input_size,
            resolution="working" if size != input_size else "full",
            image_ood=verdicts,
            mean_errors=errors,
            error_method=_error_method(random_draws, replicates is not None, result.error_bound is not None),
            tta=tta,
            passes=plan.passes,
            method=plan.method,
            unavailable=self.unavailable,
            image_check=image_check,
            estimator=result.estimator,
            enumerated_channels=result.enumerated,
            effort=draw_count(samples, result.enumerated) * 2**result.enumerated if result.enumerated else samples,
            sets=sets,
            adversarial=adversarial,
        )

    def _references(self, tta: TtaMode) -> dict[str, list[float]]:
        """Map name → sorted reference image means for the verdicts of the card's ``image_reference``.

        It was fitted without augmentation, so augmented maps are not compared with it. The feature distance, of the
        unaugmented pass, is judged by its density's own reference (:meth:`_typicality`), always.
        """
        card = self.bundle.card
        references = dict(card.image_reference.means) if card.image_reference is not None and tta == "none" else {}
        references.pop("feature_distance", None)
        return references

    def image_verdicts(self, means: dict[str, float], distance_std: float, request: AnalysisRequest) -> tuple[list[ImageOodResult], ImageCheck]:
        """The image-level verdicts of an analysis from its maps' image means and the feature distance's standard deviation
        over the image: each map's percentile against the card's reference, and the one conformal check."""
        card = self.bundle.card
        verdicts = image_verdicts(means, self._references(request.tta))
        if self.typicality_verdict and self.bundle.density is not None and card.feature_density is not None:
            typicality = self._typicality(card.feature_density)
            verdicts.append(typicality_verdict("feature_distance", means["feature_distance"], distance_std, typicality))
        return verdicts, self._image_check(means, distance_std, request)

    def _image_check(self, means: dict[str, float], distance_std: float, request: AnalysisRequest) -> ImageCheck:
        """The one image-level verdict: the card's conformal test, or why the image was not checked (always in words)."""
        card = self.bundle.card
        test = card.image_test
        if test is None and card.provenance.get("kind") == ENSEMBLE_KIND:
            return not_checked("this ensemble has no image-level reference of its own (its members' describe their own maps, not the pooled ones)", card.domain)
        if test is None:
            return not_checked("this model has no image-level reference to compare the image with (seg-uncertainty calibrate fits one)", card.domain)
        if request.tta != "none":
            return not_checked(
                f"test-time augmentation ({request.tta}) changes every map and the reference was fitted without it; analyse without "
                "augmentation to check the image",
                card.domain,
            )
        names = [c.name for c in test.components]
        typicality, pair = None, None
        if TYPICALITY in names:
            if self.bundle.density is None or card.feature_density is None:
                return not_checked("the image-level test needs the feature density, which this bundle lacks", card.domain)
            typicality = self._typicality(card.feature_density)
            pair = (means["feature_distance"], distance_std)
        raw = component_values({name: means[name] for name in names if name != TYPICALITY}, [n for n in names if n != TYPICALITY], typicality, pair)
        reference = f"{test.calibrated_on}; {test.samples} MC samples, no augmentation"
        note = ""
        if request.samples != test.samples:
            note = f"; this analysis drew {request.samples} MC samples, the reference {test.samples}, so its false-alarm rate is approximate"
        elif test.seed is not None and request.seed != test.seed:
            note = f"; this analysis used seed {request.seed}, the reference seed {test.seed}, so its false-alarm rate is approximate"
        components = [Component(c.name, c.centre, c.scale) for c in test.components]
        return check_image(raw, components, test.scores, test.alpha, reference, card.domain, note)

    def _typicality(self, info: FeatureDensityInfo) -> ImageTypicality:
        """The density's image-level reference (built once per card section)."""
        with self._cost_lock:
            if self._typical is None or self._typical[0] is not info:
                self._typical = (info, ImageTypicality(info.image_statistics))
            return self._typical[1]

    def _prefix_runner(self, height: int, width: int, cancel: CancelToken | None, passes: int = 1) -> Callable[[torch.Tensor], Any] | None:
        """The batcher's prefix for one pass of an image analysed whole; ``None`` (its own prefixes) in sliding windows or for several passes."""
        if self.batcher is None:
            return None
        if passes > 1 or self.tile_grid(height, width) is not None:
            self.batcher.alone()
            return None
        return self.batcher.runner(cancel)


def _error_method(samples: int, replicated: bool, bounded: bool) -> str:
    if samples == 0:
        return "exact"
    return "jackknife" if replicated else "tile_bound" if bounded else "unavailable"
