"""Where to run: ``auto`` picks CUDA when PyTorch sees a GPU, the CPU otherwise."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

__all__ = ["place", "resolve_device"]

M = TypeVar("M", bound=nn.Module)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` fails clearly without a GPU.

    Raises:
        ValueError: an unknown device name, or CUDA asked for without a GPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def place(module: M, device: str | torch.device) -> M:
    """Move ``module`` to ``device``; on a CPU also store its 4-d weights channels-last.

    oneDNN's CPU convolutions run channels-last (NHWC) much faster than NCHW on the narrow layers of a segmentation
    decoder (a 16-channel 3×3 convolution at 512² takes about half the time, the 5-class head a quarter), and a
    convolution with channels-last weights returns channels-last activations, so the whole forward pass stays in that
    layout whatever the input's. Values are those of the NCHW pass up to float rounding.
    """
    module = module.to(device)
    if torch.device(device).type == "cpu":
        module = module.to(memory_format=torch.channels_last)
    return module
