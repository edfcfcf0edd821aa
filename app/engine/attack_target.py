"""A network as the attack sees it: pixel values in ``[0, 255]`` → log-probabilities of the deterministic pass.

The attack (:mod:`app.engine.adversarial`) differentiates through the input's normalisation, the padding to the
network's stride and every member of an ensemble (whose log-probabilities are those of the members' mean softmax). Only
the deterministic pass is attacked: every module must be in eval mode, so BatchNorm uses its running statistics and
:class:`~app.engine.dropout.MCDropout` is the identity (no sampling plan is active outside the MC sampler).
:func:`mc_log_probs` is the stronger target for studies: the MC mean over fixed, seeded dropout masks (expectation over
transformation), so an attack on it must fool the averaged prediction, not the deterministic one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from app.engine.adversarial import PIXEL_MAX, LogProbs
from app.engine.dropout import sampling_plan
from app.engine.ensemble import members_of
from app.engine.geometry import crop, pad_to_stride
from app.engine.network import SegmentationNet

__all__ = ["mc_log_probs", "pixel_log_probs"]


def pixel_log_probs(net: SegmentationNet, mean: Sequence[float], std: Sequence[float]) -> LogProbs:
    """The deterministic pass of ``net`` from pixel values, as log-probabilities.

    Args:
        net: The network or ensemble, in eval mode.
        mean: Normalisation mean per channel (of ``x / 255``).
        std: Normalisation std per channel.

    Returns:
        ``(B, 3, H, W)`` pixel values in ``[0, 255]`` → ``(B, C, H, W)`` log-probabilities, cropped to ``(H, W)``.

    Raises:
        ValueError: a module of ``net`` is in training mode (dropout or BatchNorm would not be the deterministic pass).
    """
    if any(module.training for module in net.modules()):
        raise ValueError("the attack needs the deterministic pass: call net.eval() first (dropout off, BatchNorm running statistics)")
    members = members_of(net)

    def log_probs(x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(list(mean), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        s = torch.tensor(list(std), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        z = (x / PIXEL_MAX - m) / s
        size = (int(x.shape[-2]), int(x.shape[-1]))
        outs = []
        for member in members:
            padded, _ = pad_to_stride(z, member.stride)
            outs.append(torch.log_softmax(crop(member(padded), size), dim=1))
        if len(outs) == 1:
            return outs[0]
        return torch.logsumexp(torch.stack(outs), dim=0) - math.log(len(outs))

    return log_probs


def mc_log_probs(net: SegmentationNet, mean: Sequence[float], std: Sequence[float], samples: int, seed: int) -> LogProbs:
    """The log of the MC-mean softmax over ``samples`` fixed dropout-mask draws seeded by ``seed`` (those an analysis with
    this seed and ``samples`` draws, scheme as the modules', uses), from pixel values.

    Args:
        net: The network or ensemble, in eval mode.
        mean: Normalisation mean per channel.
        std: Normalisation std per channel.
        samples: MC draws ``T`` (each a full forward pass of the batch).
        seed: Seeds the masks.

    Returns:
        ``(B, 3, H, W)`` pixel values → ``(B, C, H, W)`` ``log mean_t softmax(z_t)``, differentiable in its input.

    Raises:
        ValueError: ``samples < 1``, or a module in training mode.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    deterministic = pixel_log_probs(net, mean, std)

    def log_probs(x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        with sampling_plan(seed, range(samples)):
            out = deterministic(x.repeat(samples, 1, 1, 1))  # sample-major rows, as the plan expects
        return torch.logsumexp(out.view(samples, batch, *out.shape[1:]), dim=0) - math.log(samples)

    return log_probs
