"""The service's warm-up compiles what the first photo needs: no kernel compiles again on the first real request."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine import rb_head
from app.engine.compiled import Kernel
from app.io.bundle import load_bundle
from app.web.service import AnalysisService
from app.web.settings import Settings
from app.workflows.analyzer import AnalysisRequest

KERNELS = ("BRANCHES_KERNEL", "GROUPED_KERNEL", "JACKKNIFE_KERNEL", "FINALIZE_KERNEL", "DRAW_KERNEL")


def _graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


@pytest.mark.slow
def test_the_first_photo_after_the_warm_up_compiles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from skimage import data

    torch._dynamo.reset()
    for name in KERNELS:
        kernel = getattr(rb_head, name)
        monkeypatch.setattr(rb_head, name, Kernel(kernel.fn, kernel.rtol, kernel.atol, kernel.compare))
    service = AnalysisService(load_bundle("default"), torch.device("cpu"), Settings(device="cpu"))
    service.warm_up()
    assert rb_head.GROUPED_KERNEL.mode == "compiled"  # the warm-up ran the default estimator's kernels
    compiled = _graphs()
    photo = np.asarray(Image.fromarray(data.chelsea()).resize((256, 170)))
    analysis = service.analyzer.analyze_image(photo, AnalysisRequest(samples=20, seed=1))
    assert analysis.estimator == "rao_blackwellised"
    assert _graphs() == compiled, "the first photo compiled a kernel again"
