"""Form fields shared by ``POST /api/v1/analyze`` and ``POST /api/v1/evaluate``, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Form

__all__ = ["RawDtypeForm", "RawForm", "ResolutionForm"]

ResolutionForm = Annotated[
    Literal["working", "full"],
    Form(
        description="working (default): an input whose long side exceeds the model's working size (GET /api/v1/models: working_size) is "
        "resized so that its long side equals it, and the maps come at that analysed size; smaller inputs are analysed as they are. "
        "full: every input pixel (large images in overlapping tiles, within the memory budget)."
    ),
]
RawForm = Annotated[
    bool,
    Form(
        description="Add the colour PNGs (data URLs) and the raw float maps, labels and MC-mean class probabilities (base64) to the answer. "
        "Default false: the compact answer (greyscale PNGs of the quantised maps and labels, a JPEG of the input), with exact values by id."
    ),
]
RawDtypeForm = Annotated[Literal["float32", "float16"], Form(description="With raw=true: element type of the raw maps and probabilities.")]
