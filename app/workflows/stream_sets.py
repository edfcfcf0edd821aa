"""Conformal prediction sets of a streamed full-resolution analysis, band by band, as an in-memory analysis has them.

Each band's set sizes ``#{c : p̄_c ≥ t}`` at every calibrated level (:func:`app.metrics.risk_control.set_sizes`, from the
band's mean probabilities before they are dropped) go to the store (``set_size_NN``, uint8, full resolution) and into
the band summary as two extra "maps" per level: the size (its image mean is the mean set size) and whether it is one
(its image mean is the share of one-class sets, its per-class mean each class row's ``sure_share``). At the end the
answer's :class:`~app.engine.analysis.PredictionSets` carry the sizes' previews (the block means, rounded) and the
shares counted at full resolution (``exact``), so nothing about the sets is lost to the previews but their pictures.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from app.engine.analysis import PredictionSets
from app.io.card import ConformalSets
from app.maps.moments import UncertaintyMaps
from app.maps.regions import Region
from app.maps.registry import set_size_name
from app.metrics.risk_control import set_sizes
from app.workflows.prediction_sets import DEFAULT_ALPHA, prediction_sets

__all__ = ["StreamedSets"]


class StreamedSets:
    """The set sizes of a streamed analysis of a model whose card has conformal levels (``card_sets``; ``None``: none)."""

    def __init__(self, card_sets: ConformalSets | None) -> None:
        self.card_sets = card_sets
        self.levels = [(level.alpha, level.threshold) for level in card_sets.levels] if card_sets is not None else []

    @property
    def store_names(self) -> list[str]:
        """The store's uint8 set-size arrays, one per level (``set_size_10``, …)."""
        return [set_size_name(alpha) for alpha, _ in self.levels]

    @property
    def summary_names(self) -> list[str]:
        """The extra summary maps: each level's size, then each level's one-class indicator."""
        return [f"size@{alpha}" for alpha, _ in self.levels] + [f"one@{alpha}" for alpha, _ in self.levels]

    @property
    def sure_name(self) -> str | None:
        """The summary map whose class and component means are the rows' ``sure_share``: the shown level's one-class indicator."""
        if not self.levels:
            return None
        alphas = [alpha for alpha, _ in self.levels]
        return f"one@{DEFAULT_ALPHA if DEFAULT_ALPHA in alphas else alphas[0]}"

    @property
    def preview_names(self) -> list[str]:
        """The extra summary maps that get previews: each level's size (the one-class indicators need none)."""
        return [f"size@{alpha}" for alpha, _ in self.levels]

    def block_sizes(self, block: UncertaintyMaps) -> dict[str, np.ndarray]:
        """Store name → a band block's ``(rows, columns)`` uint8 set sizes at that level."""
        return {set_size_name(alpha): set_sizes(block.mean_probs, t)[0].cpu().numpy() for alpha, t in self.levels}

    def summary_maps(self, sizes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The extra summary maps of a band's set sizes (float32)."""
        out = {}
        for alpha, _ in self.levels:
            size = sizes[set_size_name(alpha)]
            out[f"size@{alpha}"] = size.astype(np.float32)
            out[f"one@{alpha}"] = (size == 1).astype(np.float32)
        return out

    def finish(
        self, means: dict[str, float], previews: dict[str, np.ndarray], regions: list[Region], method: str, samples: int, temperature: float
    ) -> tuple[PredictionSets | None, list[Region]]:
        """The answer's sets (preview sizes, exact shares) and the class rows with their ``sure_share`` and without the
        extra maps' means."""
        extra = set(self.summary_names)
        cleaned = [
            replace(r, means={k: v for k, v in r.means.items() if k not in extra}, errors={k: v for k, v in r.errors.items() if k not in extra})
            for r in regions
        ]
        if self.card_sets is None:
            return None, cleaned
        sizes = {alpha: np.clip(np.rint(previews[f"size@{alpha}"]), 0, 255).astype(np.uint8) for alpha, _ in self.levels}
        sets = prediction_sets(self.card_sets, sizes, method, samples, temperature)
        sets = replace(sets, exact={alpha: (means[f"one@{alpha}"], means[f"size@{alpha}"]) for alpha, _ in self.levels})
        shown = self.sure_name
        assert shown == f"one@{sets.default_alpha}"
        return sets, [replace(r, sure_share=original.means[shown]) for r, original in zip(cleaned, regions, strict=True)]
