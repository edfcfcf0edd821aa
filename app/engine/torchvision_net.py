"""torchvision's segmentation models (DeepLabV3, FCN, LR-ASPP) as a :class:`~app.engine.network.SegmentationNet`.

A site that names one of the model's own dropout layers (DeepLabV3's ``classifier.0.project.3``, FCN's
``classifier.3``) is replaced by an :class:`~app.engine.dropout.MCDropout` of the card's rate and mode, so the
dropout the model was trained with is the one sampled; any other site gets dropout on its output, as for smp.

The forward pass is laid out as a list of steps: the backbone, then the classifier unrolled through its plain
``nn.Sequential`` containers (and DeepLabV3's ASPP: its parallel branches, then its projection). Every step before
the first one that holds a site runs once per image (:meth:`TorchvisionNet.prefix`); the rest, and the final
bilinear upsampling to the input size, run per MC sample (:meth:`TorchvisionNet.tail`). The smp-only fast heads
never apply (the net is not ``staged`` and its sites are never ``"head"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.models.segmentation.lraspp import LRASPP

from app.engine.dropout import MCDropout
from app.engine.network import HEAD_SITE, SegmentationNet

__all__ = ["TorchvisionNet"]

Step = tuple[str, Callable[[Any], Any]]
Cached = tuple[tuple[str, ...] | None, tuple[torch.Tensor, ...], tuple[int, int]]


def _covers(path: str, site: str) -> bool:
    return site == path or site.startswith(path + ".")


def _unroll(path: str, module: nn.Module, whole: set[str]) -> list[Step]:
    """The steps that ``module`` runs, in order; a module in ``whole`` (it carries an output hook) stays one step."""
    if path in whole:
        return [(path, module)]
    if isinstance(module, ASPP):
        branches = module.convs

        def aspp_branches(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([branch(x) for branch in branches], dim=1)

        return [(f"{path}.convs", aspp_branches), *_unroll(f"{path}.project", module.project, whole)]
    if type(module).forward is nn.Sequential.forward:
        return [step for name, child in module.named_children() for step in _unroll(f"{path}.{name}", child, whole)]
    return [(path, module)]


class TorchvisionNet(SegmentationNet):
    """Wrap a torchvision segmentation model (``model(x)["out"]`` are the logits) with MC-dropout sites.

    Args:
        net: A model from ``torchvision.models.segmentation`` (``backbone`` + ``classifier``).
        sites: Dotted module paths: the model's own dropout layers, or modules whose output gets dropout.
        rate: Drop probability at every site.
        mode: ``"channel"`` or ``"element"`` (``nn.Dropout``, the layers these models are trained with).
        stride: Input height and width must be multiples of this.

    Raises:
        ValueError: a site names no module, or is smp's ``"head"``.
    """

    def __init__(self, net: nn.Module, sites: Sequence[str], rate: float, mode: str, stride: int) -> None:
        super().__init__(net, (), rate, mode, stride=stride)
        self.sites = tuple(sites)
        hooked: set[str] = set()
        for index, site in enumerate(self.sites):
            if site == HEAD_SITE:
                raise ValueError("site 'head' is for smp models; name a module such as 'classifier.0.project.3' (DeepLabV3's own dropout)")
            try:
                module = net.get_submodule(site)
            except AttributeError as exc:
                raise ValueError(f"dropout site {site!r} names no submodule of the model") from exc
            drop = MCDropout(rate, mode, site=index)
            self.dropouts.append(drop)
            if isinstance(module, nn.modules.dropout._DropoutNd) and not isinstance(module, MCDropout):
                parent, _, name = site.rpartition(".")
                setattr(net.get_submodule(parent), name, drop)
            else:
                module.register_forward_hook(lambda _m, _args, out, d=drop: d(out))
                hooked.add(site)
        self.steps = [("backbone", self._backbone), *_unroll("classifier", cast(nn.Module, net.classifier), hooked)]
        self.split = next((i for i, (path, _) in enumerate(self.steps) if any(_covers(path, s) for s in self.sites)), len(self.steps))

    def _backbone(self, x: torch.Tensor) -> Any:
        features = cast(nn.Module, self.model.backbone)(x)
        return features if isinstance(self.model, LRASPP) else features["out"]

    @property
    def first_stochastic_stage(self) -> str:
        """The first step run per sample (``"backbone"``: the whole model), or ``"none"`` without sites.

        ``"all"`` while :class:`SegmentationNet`'s constructor runs, before the steps exist (no smp staging applies).
        """
        steps: list[Step] | None = self.__dict__.get("steps")
        if steps is None:
            return "all"
        return steps[self.split][0] if self.split < len(steps) else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full forward: ``(B, 3, H, W)`` → ``(B, C, H, W)`` logits (the model's ``"out"``)."""
        logits: torch.Tensor = self.model(x)["out"]
        return logits

    def prefix(self, x: torch.Tensor) -> Cached:
        """Run the steps before the first site once: ``(dict keys or None, tensors, input size)``."""
        value: Any = x
        for _, step in self.steps[: self.split]:
            value = step(value)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if isinstance(value, dict):
            return tuple(value), tuple(value.values()), size
        return None, (value,), size

    def tail(self, cached: Cached, copies: int) -> torch.Tensor:
        """Run the remaining steps on ``copies`` sample-major copies of ``cached``; ``(copies * B, C, H, W)`` logits."""
        keys, tensors, size = cached
        repeated = tuple(t.repeat(copies, *([1] * (t.dim() - 1))) for t in tensors)
        value: Any = repeated[0] if keys is None else dict(zip(keys, repeated, strict=True))
        for _, step in self.steps[self.split :]:
            value = step(value)
        return F.interpolate(value, size=size, mode="bilinear", align_corners=False)
