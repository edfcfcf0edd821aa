"""Calibrate a bundle on labelled images: fit its temperature, record the image-level OOD reference, fit the image-level
conformal test (:mod:`app.metrics.conformal`) and the per-pixel conformal sets and class masks
(:mod:`app.workflows.set_calibration`) in ``model.json``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.defaults import DEFAULT_SAMPLES, DEFAULT_SEED, IGNORE_INDEX, TEMPERATURE_FIT_MAX_PIXELS, TtaMode
from app.engine.analysis import Analysis
from app.engine.dropout_masks import image_seed
from app.io.bundle import ImageReference, write_card
from app.io.card import ImageTest, ImageTestComponent
from app.maps.registry import DETECTION_MAPS
from app.metrics.calibration import CalibrationStats, binning_text
from app.metrics.conformal import DEFAULT_ALPHA, combined_score, component_values, fit_components
from app.metrics.image_ood import ImageTypicality
from app.metrics.pixels import scored_pixels
from app.metrics.temperature import FIT_METHOD, LogitPool, fit_temperature, nll_at
from app.plural import plural
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.evaluate_folder import Progress, labelled_pairs
from app.workflows.set_calibration import SetCalibration

__all__ = ["IMAGE_TEST_METHOD", "REFERENCE_MAPS", "Calibration", "calibrate_bundle", "fit_image_test", "image_means", "test_values"]


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature, what it did to the data it was fitted on, and the image-level reference and test recorded with it."""

    temperature: float
    image_reference: ImageReference
    image_test: ImageTest | None
    pixels: int
    ignored_pixels: int
    subsample_rate: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float


def _total_pixels(pairs: Sequence[tuple[Path, Path]]) -> int:
    total = 0
    for image, _ in pairs:
        with Image.open(image) as img:
            total += img.size[0] * img.size[1]
    return total


def _ece(log_probs: torch.Tensor, labels: torch.Tensor, tau: float) -> float:
    stats = CalibrationStats()
    stats.update(torch.softmax(log_probs / tau, dim=1), labels)
    return stats.result().ece


REFERENCE_MAPS = tuple(name for name in DETECTION_MAPS if name != "feature_distance")


def image_means(analysis: Analysis) -> dict[str, float]:
    """The image mean (float64 accumulation) of every map of :data:`REFERENCE_MAPS` in ``analysis``.

    The feature distance is left out: its reference is fitted with the density and stored with it (``fit-density``).
    """
    return {name: float(analysis.maps[name].mean(dtype=np.float64)) for name in REFERENCE_MAPS}


IMAGE_TEST_METHOD = (
    "max over components of (value - median) / ((q90 - q50) / 1.2816) on the fit images; components: the image means of "
    "confidence (negated), entropy, variance and mutual information, and the feature distance's typicality (one-sided "
    "Mahalanobis distance of its image mean and standard deviation) when the bundle has a density; split-conformal "
    "p = (1 + #{calibration scores >= score}) / (n + 1)"
)


def test_values(analyzer: Analyzer, analysis: Analysis) -> dict[str, float]:
    """The raw components of the image test for one analysis (:func:`app.metrics.conformal.component_values`): every map of
    :data:`REFERENCE_MAPS`, and the feature typicality when the bundle has a feature density."""
    card = analyzer.bundle.card
    typicality, pair = None, None
    if analyzer.bundle.density is not None and card.feature_density is not None:
        typicality = ImageTypicality(card.feature_density.image_statistics)
        values = analysis.maps["feature_distance"]
        pair = (float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64)))
    return component_values(image_means(analysis), REFERENCE_MAPS, typicality, pair)


# Without separate calibration images, the labelled images are split in two: the first half fits the score (at least 2),
# the second calibrates it (at least 1).
MIN_SPLIT_IMAGES = 3


def fit_image_test(
    fit: Sequence[dict[str, float]],
    calibration: Sequence[dict[str, float]],
    *,
    fitted_on: str,
    calibrated_on: str,
    samples: int,
    seed: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    command: str | None = None,
) -> ImageTest:
    """Fit the components on ``fit`` images' raw values and score the ``calibration`` images (another split: neither the
    components nor the feature density may have seen them, or the p-values are too small)."""
    components = fit_components(fit)
    scores = [combined_score(v, components)[0] for v in calibration]
    if not scores:
        raise ValueError("the image test needs at least one calibration image")
    return ImageTest(
        method=IMAGE_TEST_METHOD,
        alpha=alpha,
        components=[ImageTestComponent(name=c.name, centre=c.centre, scale=c.scale) for c in components],
        fitted_on=fitted_on,
        fit_images=len(fit),
        calibrated_on=calibrated_on,
        samples=samples,
        seed=seed,
        scores=scores,
        command=command,
    )


def _unlabelled_values(analyzer: Analyzer, images: Sequence[Path], request: AnalysisRequest) -> list[dict[str, float]]:
    return [test_values(analyzer, analyzer.analyze_bytes(path.read_bytes(), request)) for path in images]


def calibrate_bundle(
    analyzer: Analyzer,
    pairs: Sequence[tuple[Path, Path]],
    *,
    images: Path,
    masks: Path,
    ignore_index: int | None = IGNORE_INDEX,
    seed: int = DEFAULT_SEED,
    samples: int = DEFAULT_SAMPLES,
    split: str | None = None,
    progress: Progress = iter,
    conformal_images: Sequence[Path] | None = None,
    conformal_split: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    command: str | None = None,
    sets_tta: TtaMode = "none",
) -> Calibration:
    """Fit ``τ`` and record the image-level OOD reference; write both into the analyser's bundle.

    Each image is analysed once, the way a user's upload is (``samples`` MC samples, uncalibrated), its masks seeded
    by ``image_seed(seed, image file name)`` (see :func:`~app.workflows.evaluate_folder.labelled_pairs`).
    ``τ`` is fitted on the deterministic softmax of every scored pixel (beyond
    :data:`~app.defaults.TEMPERATURE_FIT_MAX_PIXELS` labelled pixels a seeded uniform subsample is used); the
    deterministic softmax does not depend on ``samples``. The image mean of every detection map but the feature distance, over all
    pixels, becomes the card's ``image_reference`` that later analyses are compared with.

    Args:
        analyzer: The analyser of the bundle to calibrate.
        pairs: ``(image, mask)`` files.
        images: The image folder, recorded in the card.
        masks: The mask folder, recorded in the card.
        ignore_index: Mask value that is not scored.
        seed: Seed of the subsample, and the run seed each image's dropout seed is derived from.
        samples: MC samples of each analysis (the default of an analysis, so the reference matches what users get).
        split: What the images are, in words, for the card (default: the image folder).
        progress: Wraps the pair list, e.g. in a progress bar.
        conformal_images: The image test's calibration images (unlabelled), each analysed with the run ``seed`` itself,
            as a user's upload is with a fixed seed: the MC maps' image means depend on the dropout masks, so scores
            calibrated over per-image seeds are not exchangeable with analyses that share one seed (measured: 4 %
            false alarms at alpha = 0.01 on the default model). They must be disjoint from the pairs and from the
            feature density's fit images. ``None``: the pairs' first half (sorted) fits the test's components and the
            second half calibrates it (per-image seeds, so approximate), valid only when the feature density was not
            fitted on that second half.
        conformal_split: What the calibration images are, in words (default: their folder).
        alpha: The test's false-alarm rate, stored in the card.
        command: The command, recorded with the test.
        sets_tta: The test-time augmentation the conformal prediction sets are calibrated for (each image is analysed once
            more with it; the temperature, reference and image test stay fitted without augmentation).

    Raises:
        app.io.masks.DatasetError: an image or mask cannot be read or does not match.
        ValueError: no labelled pixels.
    """
    bundle = analyzer.bundle
    card = bundle.card
    num_classes = len(card.classes)
    pool = LogitPool(rate=min(1.0, TEMPERATURE_FIT_MAX_PIXELS / max(_total_pixels(pairs), 1)), seed=seed)
    ignored = 0
    means: dict[str, list[float]] = {name: [] for name in REFERENCE_MAPS}
    values: list[dict[str, float]] = []
    request = AnalysisRequest(samples=samples, seed=seed)
    sets = SetCalibration(bundle.class_names, ignore_index)
    method = "mc_dropout"
    for image, labelled in labelled_pairs(analyzer, pairs, request, progress):
        for_sets = labelled.analysis
        if sets_tta != "none":
            seeded = replace(request, seed=image_seed(seed, image.name), tta=sets_tta)
            for_sets = analyzer.analyze_image(labelled.analysis.image, seeded, input_size=labelled.analysis.input_size)
        sets.add(for_sets.mean_probs, labelled.mask)
        method = for_sets.method
        y = torch.from_numpy(labelled.mask.reshape(-1))
        valid = scored_pixels(y, num_classes, ignore_index)
        ignored += int((~valid).sum())
        pool.add(torch.from_numpy(labelled.analysis.probs.reshape(num_classes, -1)).T[valid], y[valid])
        for name, mean in image_means(labelled.analysis).items():
            means[name].append(mean)
        values.append(test_values(analyzer, labelled.analysis))
    log_probs, labels = pool.tensors()
    tau = fit_temperature(log_probs, labels)
    reference = ImageReference(split=split if split is not None else str(images), images=len(pairs), samples=samples, means=means)
    fitted_on = split if split is not None else str(images)
    if conformal_images is not None:
        where = conformal_split if conformal_split is not None else str(Path(conformal_images[0]).parent) if conformal_images else "(none)"
        test = fit_image_test(
            values,
            _unlabelled_values(analyzer, conformal_images, request),
            fitted_on=fitted_on,
            calibrated_on=where,
            samples=samples,
            seed=seed,
            alpha=alpha,
            command=command,
        )
    elif len(values) < MIN_SPLIT_IMAGES:
        test = None  # too few images to fit the score on some and calibrate it on others: the card keeps no image test
    else:
        half = (len(values) + 1) // 2
        test = fit_image_test(
            values[:half],
            values[half:],
            fitted_on=f"the first {plural(half, 'image')} of {fitted_on}",
            calibrated_on=f"the last {plural(len(values) - half, 'image')} of {fitted_on}",
            samples=samples,
            alpha=alpha,
            command=command,
        )
    result = Calibration(
        temperature=round(tau, 6),
        image_reference=reference,
        image_test=test,
        pixels=int(labels.numel()),
        ignored_pixels=ignored,
        subsample_rate=pool.rate,
        ece_before=_ece(log_probs, labels, 1.0),
        ece_after=_ece(log_probs, labels, tau),
        nll_before=nll_at(log_probs, labels, 1.0),
        nll_after=nll_at(log_probs, labels, tau),
    )
    card.temperature = result.temperature
    card.calibration = {
        "temperature": result.temperature,
        "method": FIT_METHOD,
        "fitted_on": {
            "images": str(images),
            "masks": str(masks),
            "count": len(pairs),
            "pixels": result.pixels,
            "ignored_pixels": ignored,
            "subsample_rate": pool.rate,
        },
        "ece_before": result.ece_before,
        "ece_after": result.ece_after,
        "nll_before": result.nll_before,
        "nll_after": result.nll_after,
        "ece_binning": binning_text(),
    }
    card.image_reference = reference
    card.image_test = test
    card.conformal_sets = sets.fit(analysis_method=method, samples=samples, calibrated_on=f"{fitted_on} (per-image dropout seeds)", command=command)
    write_card(card, bundle.path)
    return result
