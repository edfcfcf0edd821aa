"""The propagated tiled head: a factorised head's MC statistics without sampling (:mod:`app.maps.propagation`).

For a network where :func:`~app.engine.tiled_head.tileable` holds, the image is cut into row tiles as in
:class:`~app.engine.tiled_head.TiledHeadSampler`; per tile the per-channel head outputs are computed once and turned
into ``E p``, ``E p²`` and ``E H(p)`` — each pixel's ``k`` strongest channels exactly, the others to second order — and
those into maps (:func:`~app.maps.rb_finalize.finalize_sums` with one group of one "draw": no bias correction, no
replicates). The maps carry no Monte-Carlo noise and no Monte-Carlo error bar; their truncation bias is measured, not
reported per analysis.
"""

from __future__ import annotations

import torch

from app.engine.cancel import CancelToken, checkpoint, progress_steps
from app.engine.compiled import Kernel
from app.engine.rb_head import FINALIZE_KERNEL, EnumeratingHead
from app.maps.functions import softmax_confidence
from app.maps.moments import UncertaintyMaps
from app.maps.propagation import propagate, propagated_moments
from app.maps.rb_finalize import MAP_ORDER

__all__ = ["PROPAGATE_KERNEL", "PropagatedHead"]

PROPAGATE_KERNEL = Kernel(propagate)


class PropagatedHead(EnumeratingHead):
    """Sampling-free statistics of a tileable head, tile by tile (arguments as :class:`~app.engine.rb_head.EnumeratingHead`)."""

    def maps(self, samples: int, temperature: float, cancel: CancelToken | None = None) -> UncertaintyMaps:
        """The maps; ``samples`` is only reported (nothing is sampled)."""
        b, k, h, w = self.shape
        c, device, dtype = self.classes, self.padded.device, self.padded.dtype
        out = {name: torch.empty(b, c, h, w, device=device) for name in ("mean_probs", "class_variance")}
        out.update({name: torch.empty(b, h, w, device=device) for name in ("entropy", "expected_entropy", "mutual_information", "variance")})
        out["prediction"] = torch.empty(b, h, w, dtype=torch.int64, device=device)
        probs = torch.empty(b, c, h, w, device=device)
        per_row = 4 * c * w * (k + c + 2 ** (self.enumerated + 2))
        rows = max(1, min(h, self.tile_bytes // max(per_row, 1)))
        row_done = progress_steps(cancel, -(-h // rows), "row tile")
        bias = self.bias.view(-1) if self.bias is not None else torch.zeros(c, device=device, dtype=dtype)
        one = torch.ones(1, device=device)
        for r0 in range(0, h, rows):
            checkpoint(cancel)
            r1 = min(h, r0 + rows)
            det, mean, second, expected = propagated_moments(self.tile_parts(r0, r1), bias, self.enumerated, self.keep, temperature, PROPAGATE_KERNEL)
            probs[:, :, r0:r1] = det.view(b, c, r1 - r0, w)
            result = FINALIZE_KERNEL(mean.unsqueeze(0), second.unsqueeze(0), expected.unsqueeze(0), one, one, False)
            for name, value in zip(MAP_ORDER, result, strict=True):
                target = out[name]
                target[..., r0:r1, :] = value.view(*target.shape[:-2], r1 - r0, w)
            row_done()
        return UncertaintyMaps(
            prediction=out["prediction"],
            confidence=softmax_confidence(probs),
            probs=probs,
            samples=samples,
            replicates=None,
            estimator="propagated",
            enumerated=self.enumerated,
            mean_probs=out["mean_probs"],
            class_variance=out["class_variance"],
            entropy=out["entropy"],
            expected_entropy=out["expected_entropy"],
            mutual_information=out["mutual_information"],
            variance=out["variance"],
        )
