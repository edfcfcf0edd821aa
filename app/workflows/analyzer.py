"""Image → :class:`~app.engine.analysis.Analysis`: the one path the page, the REST API and the CLI share."""

from __future__ import annotations

import time

import numpy as np
import torch

from app.defaults import DEFAULT_SAMPLES, DEFAULT_SEED, MAX_PIXELS, MEMORY_BUDGET, MIN_AREA
from app.engine.analysis import Analysis
from app.engine.geometry import crop, pad_to_stride, to_tensor
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import Bundle
from app.io.decoding import decode_image
from app.maps.regions import region_table
from app.maps.registry import map_ranges
from app.metrics.image_ood import image_verdicts

__all__ = ["Analyzer"]


class Analyzer:
    """Runs a loaded bundle on images.

    Args:
        bundle: The model bundle (its network is moved to ``device``).
        device: Where to run.
        max_pixels: Pixel limit for decoded images.
        memory_budget: Bytes one chunk of MC samples may use.
    """

    def __init__(self, bundle: Bundle, device: torch.device | str = "cpu", max_pixels: int = MAX_PIXELS, memory_budget: int = MEMORY_BUDGET) -> None:
        self.bundle = bundle
        self.device = torch.device(device)
        self.bundle.net.to(self.device).eval()
        self.max_pixels = max_pixels
        self.memory_budget = memory_budget

    def decode(self, data: bytes) -> np.ndarray:
        """Decode upload bytes to ``(H, W, 3)`` uint8 RGB within this analyser's pixel limit.

        Raises:
            app.io.decoding.ImageDecodeError: the bytes are not a usable image.
        """
        return decode_image(data, self.max_pixels)

    def analyze_bytes(
        self,
        data: bytes,
        samples: int = DEFAULT_SAMPLES,
        seed: int = DEFAULT_SEED,
        calibrated: bool = False,
        chunk_size: int | None = None,
        min_area: int = MIN_AREA,
    ) -> Analysis:
        """Decode ``data`` and analyse it; see :meth:`analyze_image` for the options."""
        start = time.perf_counter()
        rgb = self.decode(data)
        decoded = time.perf_counter() - start
        result = self.analyze_image(rgb, samples=samples, seed=seed, calibrated=calibrated, chunk_size=chunk_size, min_area=min_area)
        result.timings["decode"] = decoded
        return result

    def analyze_image(
        self,
        rgb: np.ndarray,
        samples: int = DEFAULT_SAMPLES,
        seed: int = DEFAULT_SEED,
        calibrated: bool = False,
        chunk_size: int | None = None,
        min_area: int = MIN_AREA,
    ) -> Analysis:
        """Analyse ``(H, W, 3)`` uint8 RGB.

        Args:
            rgb: The image.
            samples: MC samples ``T`` (0: deterministic only).
            seed: Seed of the dropout masks.
            calibrated: Apply the bundle's temperature (``τ = 1`` otherwise).
            chunk_size: Samples per batched pass (``None``: from the memory budget).
            min_area: Smallest connected component listed in the region table.
        """
        card = self.bundle.card
        net = self.bundle.net
        temperature = card.temperature if calibrated else 1.0
        start = time.perf_counter()
        x = to_tensor(rgb, card.normalization.mean, card.normalization.std).to(self.device)
        padded, size = pad_to_stride(x, net.stride)
        options = SamplingOptions(samples=samples, seed=seed, temperature=temperature, chunk_size=chunk_size, memory_budget=self.memory_budget)
        result = run_mc(net, padded, options)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        inference = time.perf_counter() - start

        def host(t: torch.Tensor) -> np.ndarray:
            return crop(t[0], size).cpu().numpy()

        maps = {name: host(t).astype(np.float32) for name, t in result.scalar_maps().items()}
        prediction = host(result.prediction).astype(np.int64)
        start = time.perf_counter()
        regions = region_table(prediction, maps, self.bundle.class_names, min_area=min_area)
        reference = card.image_reference
        verdicts = image_verdicts({k: float(v.mean(dtype=np.float64)) for k, v in maps.items()}, reference.means) if reference else []
        return Analysis(
            image=rgb,
            prediction=prediction,
            maps=maps,
            mean_probs=host(result.mean_probs),
            probs=host(result.probs),
            class_variance=host(result.class_variance),
            ranges=map_ranges(len(card.classes)),
            regions=regions,
            samples=result.samples,
            seed=seed,
            temperature=temperature,
            calibrated=calibrated,
            device=str(self.device),
            dropout_added_at_inference=not card.dropout.trained_with_dropout,
            timings={"inference": inference, "regions": time.perf_counter() - start},
            input_size=(int(rgb.shape[0]), int(rgb.shape[1])),
            resolution="full",
            image_ood=verdicts,
        )
