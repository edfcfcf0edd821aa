"""Fit a bundle's feature density on in-distribution images and store it with the bundle.

Three passes over the images, each run the way an upload is analysed (decoded, resized to the card's working size):

1. the deterministic pass's decoder output and predicted classes stream into a
   :class:`~app.maps.density.DensityAccumulator` (float64 sums: memory independent of the number of pixels) →
   class means and the tied covariance;
2. every pixel's ``d²`` to the fitted Gaussians, a seeded uniform subsample of at most
   :data:`QUANTILE_MAX_PIXELS` of them → the quantiles that turn ``d²`` into the map's percentile;
3. each image analysed through :class:`~app.workflows.analyzer.Analyzer` with the new density (``T = 0``; the map
   does not depend on ``T``) → the mean and standard deviation of the map over each image, the reference of the
   image-level verdict (:class:`~app.metrics.image_ood.ImageTypicality`).

Class conditioning uses the model's own prediction (argmax of the deterministic softmax), so unlabelled
in-distribution images suffice; on the default model's validation split this matched ground-truth conditioning
within 0.01 AUROC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.defaults import DEFAULT_SEED, IMAGE_SUFFIXES
from app.engine.feature_density import FEATURES, head_input, supports_density
from app.engine.geometry import pad_to_stride, to_tensor
from app.io.bundle import write_card
from app.io.card import FeatureDensityInfo
from app.io.decoding import ImageDecodeError
from app.io.density import DENSITY_FILE, write_density
from app.io.masks import DatasetError
from app.io.resize import resize_rgb
from app.maps.density import RIDGE, DensityAccumulator, FeatureDensity, quantile_levels
from app.plural import plural
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

__all__ = ["MIN_CLASS_PIXELS", "QUANTILE_MAX_PIXELS", "DensityFit", "fit_density", "image_files"]

MIN_CLASS_PIXELS = 64
QUANTILE_MAX_PIXELS = 4_000_000

Progress = Callable[[Sequence[Path]], Iterable[Path]]


@dataclass(frozen=True)
class DensityFit:
    """A fitted density and what it was fitted on.

    Attributes:
        density: The density.
        info: Its card section (written into ``model.json``).
        pixels: Pixels the Gaussians were fitted on.
        quantile_pixels: Pixels the quantiles were taken from.
    """

    density: FeatureDensity
    info: FeatureDensityInfo
    pixels: int
    quantile_pixels: int


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted.

    Raises:
        DatasetError: not a folder, or no images in it.
    """
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _analysed(analyzer: Analyzer, path: Path) -> np.ndarray:
    try:
        rgb = analyzer.decode(path.read_bytes())
    except ImageDecodeError as exc:
        raise DatasetError(f"{path.name}: {exc.message}") from exc
    analysed = resize_rgb(rgb, analyzer.analysed_shape(int(rgb.shape[0]), int(rgb.shape[1])))
    if analyzer.tile_grid(int(analysed.shape[0]), int(analysed.shape[1])) is not None:
        raise DatasetError(f"{path.name}: {analysed.shape[1]}x{analysed.shape[0]} is too large to fit on whole within the memory budget; use smaller images")
    return analysed


def _pixels(analyzer: Analyzer, analysed: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, K)`` decoder features and ``(N,)`` predicted classes of an image's pixels (padding left out)."""
    net = analyzer.bundle.net
    norm = analyzer.bundle.card.normalization
    x, _ = pad_to_stride(to_tensor(analysed, norm.mean, norm.std).to(analyzer.device), net.stride)
    with torch.inference_mode():
        cached = net.prefix(x)
        features = head_input(net, cached, x)
        logits = net.tail(cached, 1)
    fh, fw = features.shape[-2:]
    labels = logits.argmax(dim=1, keepdim=True).float()
    if labels.shape[-2:] != (fh, fw):
        labels = torch.nn.functional.interpolate(labels, size=(fh, fw), mode="nearest")
    rows = -(-analysed.shape[0] * fh // x.shape[-2])
    cols = -(-analysed.shape[1] * fw // x.shape[-1])
    kept = features[0, :, :rows, :cols]
    return kept.reshape(kept.shape[0], -1).T.cpu(), labels[0, 0, :rows, :cols].reshape(-1).long().cpu()


def fit_density(
    analyzer: Analyzer,
    images: Sequence[Path],
    *,
    folder: Path | None = None,
    seed: int = DEFAULT_SEED,
    min_pixels: int = MIN_CLASS_PIXELS,
    ridge: float = RIDGE,
    quantile_max_pixels: int = QUANTILE_MAX_PIXELS,
    command: str | None = None,
    progress: Progress = iter,
    write: bool = True,
) -> DensityFit:
    """Fit the feature density of the analyser's bundle on ``images``; attach it to the bundle and (``write``) store it.

    Args:
        analyzer: The analyser of the bundle (an smp-shaped model).
        images: In-distribution image files (a validation split).
        folder: The image folder, recorded in the card (default: the first image's folder).
        seed: Seed of the quantiles' pixel subsample.
        min_pixels: Classes predicted on fewer pixels get no Gaussian.
        ridge: Covariance ridge (:meth:`~app.maps.density.DensityAccumulator.covariance`).
        quantile_max_pixels: At most this many pixels (a seeded uniform subsample) give the quantiles.
        command: The command line, recorded in the card.
        progress: Wraps the image list of each of the three passes, e.g. in a progress bar.
        write: Write ``density.safetensors`` and ``model.json`` into the bundle folder.

    Raises:
        DatasetError: no images, or one that cannot be read or is too large.
        ValueError: a model without a decoder output (not smp-shaped, or an ensemble), or no usable pixels.
    """
    bundle = analyzer.bundle
    card = bundle.card
    if not supports_density(bundle.net):
        raise ValueError("fit-density needs an smp-shaped model (encoder, decoder, segmentation_head); ensembles and torchvision models have none")
    if len(images) < 3:
        raise DatasetError(f"the density's image-level reference needs at least 3 images, got {len(images)}")
    accumulator: DensityAccumulator | None = None
    for path in progress(images):
        features, labels = _pixels(analyzer, _analysed(analyzer, path))
        accumulator = accumulator or DensityAccumulator(len(card.classes), features.shape[1])
        accumulator.update(features, labels)
    assert accumulator is not None
    means, classes, whitening = accumulator.fit(min_pixels=min_pixels, ridge=ridge)
    levels = quantile_levels()
    provisional = FeatureDensity(means, classes, whitening, torch.zeros_like(levels), levels)
    rate = min(1.0, quantile_max_pixels / max(accumulator.pixels, 1))
    generator = torch.Generator().manual_seed(seed)
    kept: list[torch.Tensor] = []
    for path in progress(images):
        features, _ = _pixels(analyzer, _analysed(analyzer, path))
        squared = provisional.squared_distance(features.T.reshape(1, -1, features.shape[0], 1)).reshape(-1).double()
        kept.append(squared[torch.rand(squared.numel(), generator=generator, dtype=torch.float64) < rate])
    sample = torch.cat(kept)
    if sample.numel() == 0:
        raise ValueError("no pixels were sampled for the quantiles")
    density = FeatureDensity(means, classes, whitening, torch.quantile(sample, levels), levels)
    bundle.density = density
    statistics = []
    for path in progress(images):
        values = analyzer.analyze_image(_analysed(analyzer, path), AnalysisRequest(samples=0, seed=seed)).maps["feature_distance"]
        statistics.append((float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64))))
    info = FeatureDensityInfo(
        file=DENSITY_FILE,
        features=FEATURES,
        channels=density.channels,
        classes=[card.classes[int(c)].name for c in classes],
        conditioning=f"predicted class (argmax of the deterministic softmax); classes predicted on fewer than {plural(min_pixels, 'pixel')} get no mean",
        covariance=f"tied (shared by the classes, maximum likelihood) + {ridge:g} x mean eigenvalue on the diagonal",
        fitted_on={
            "images": str(folder if folder is not None else images[0].parent),
            "count": len(images),
            "pixels": accumulator.pixels,
            "quantile_pixels": int(sample.numel()),
            "quantile_levels": int(levels.numel()),
            "seed": seed,
        },
        image_statistics=statistics,
        command=command,
    )
    card.feature_density = info
    if write:
        write_density(density, bundle.path / DENSITY_FILE)
        write_card(card, bundle.path)
    return DensityFit(density=density, info=info, pixels=accumulator.pixels, quantile_pixels=int(sample.numel()))
