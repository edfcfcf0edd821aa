"""Image → :class:`Analysis`: the one path the page, the REST API and the CLI share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from app.bundle import Bundle
from app.imaging import DEFAULT_MAX_PIXELS, crop, decode_image, pad_to_stride, to_tensor
from app.regions import region_table
from app.sampling import SamplingOptions, run_mc
from app.uncertainty import map_ranges

__all__ = ["Analysis", "Analyzer", "resolve_device"]

MAP_NAMES = ("confidence", "entropy", "expected_entropy", "mutual_information", "variance")


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` fails clearly without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


@dataclass
class Analysis:
    """Everything one analysis produced, cropped to the input's size.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB input after decoding.
        prediction: ``(H, W)`` int64 labels.
        maps: Name → ``(H, W)`` float32 map (see ``MAP_NAMES``).
        mean_probs: ``(C, H, W)`` float32 MC mean probabilities (deterministic if ``samples == 0``).
        probs: ``(C, H, W)`` float32 deterministic softmax.
        class_variance: ``(C, H, W)`` float32 per-class MC variance.
        ranges: Name → fixed ``(lo, hi)`` of each map.
        regions: The region table.
        timings: Seconds for ``decode``, ``inference``, ``regions``.
    """

    image: np.ndarray
    prediction: np.ndarray
    maps: dict[str, np.ndarray]
    mean_probs: np.ndarray
    probs: np.ndarray
    class_variance: np.ndarray
    ranges: dict[str, tuple[float, float]]
    regions: list[dict[str, object]]
    samples: int
    seed: int
    temperature: float
    calibrated: bool
    device: str
    dropout_added_at_inference: bool
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.prediction.shape[0])

    @property
    def width(self) -> int:
        return int(self.prediction.shape[1])


class Analyzer:
    """Runs a loaded bundle on images.

    Args:
        bundle: The model bundle (its network is moved to ``device``).
        device: Where to run.
        max_pixels: Pixel limit for decoded images.
        memory_budget: Bytes one chunk of MC samples may use.
    """

    def __init__(self, bundle: Bundle, device: torch.device | str = "cpu", max_pixels: int = DEFAULT_MAX_PIXELS, memory_budget: int = 512 * 2**20) -> None:
        self.bundle = bundle
        self.device = torch.device(device)
        self.bundle.net.to(self.device).eval()
        self.max_pixels = max_pixels
        self.memory_budget = memory_budget

    def analyze_bytes(self, data: bytes, **kwargs: object) -> Analysis:
        """Decode ``data`` and analyse it; see :meth:`analyze_image` for the options."""
        start = time.perf_counter()
        rgb = decode_image(data, self.max_pixels)
        decoded = time.perf_counter() - start
        result = self.analyze_image(rgb, **kwargs)  # type: ignore[arg-type]
        result.timings["decode"] = decoded
        return result

    def analyze_image(
        self, rgb: np.ndarray, samples: int = 20, seed: int = 0, calibrated: bool = False, chunk_size: int | None = None, min_area: int = 64
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
        temperature = card.temperature if calibrated else 1.0
        start = time.perf_counter()
        x = to_tensor(rgb, card.normalization.mean, card.normalization.std).to(self.device)
        padded, size = pad_to_stride(x, self.bundle.net.stride)
        options = SamplingOptions(samples=samples, seed=seed, temperature=temperature, chunk_size=chunk_size, memory_budget=self.memory_budget)
        result = run_mc(self.bundle.net, padded, options)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        inference = time.perf_counter() - start

        def host(t: torch.Tensor) -> np.ndarray:
            return crop(t[0], size).cpu().numpy()

        maps = {name: host(t).astype(np.float32) for name, t in result.scalar_maps().items()}
        prediction = host(result.prediction).astype(np.int64)
        start = time.perf_counter()
        regions = region_table(prediction, maps, self.bundle.class_names, min_area=min_area)
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
        )
