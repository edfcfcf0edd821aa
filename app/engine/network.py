"""A segmentation network split into stages, with MC-dropout sites attached.

For an smp model (``encoder`` → ``decoder`` → ``segmentation_head``) the
stages before the first dropout site are deterministic and can be run once per
image; only the stochastic tail has to run once per MC sample. Models of any
other shape are run whole (``first_stochastic_stage == "all"``). With a site inside the decoder, the decoder's
submodules that return before it are cached too (:mod:`app.engine.decoder_cache`): a sample runs only what
follows the site. Those submodules are patched only while :meth:`SegmentationNet.prefix` and
:meth:`SegmentationNet.tail` run (:func:`~app.engine.decoder_cache.installed`); the wrapped model is never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from app.engine import decoder_cache
from app.engine.dropout import MCDropout

HEAD_SITE = "head"
STAGES = ("encoder", "decoder", "head")


def _is_staged(net: nn.Module) -> bool:
    return all(hasattr(net, name) for name in ("encoder", "decoder", "segmentation_head"))


def _stage_rank(site: str) -> int:
    root = site.split(".")[0]
    if site == HEAD_SITE or root == "segmentation_head":
        return 2
    return {"encoder": 0, "decoder": 1}.get(root, -1)


class SegmentationNet(nn.Module):
    """Wrap a segmentation model and attach :class:`MCDropout` at named sites.

    Args:
        net: The model; ``net(x)`` maps ``(B, 3, H, W)`` to ``(B, C, H, W)`` logits.
        sites: ``"head"`` (dropout on the segmentation head's input) or dotted
            paths of submodules whose output gets dropout, e.g. ``"decoder.blocks.3"``.
        rate: Drop probability at every site.
        mode: ``"channel"`` or ``"element"``.
        stride: Input height and width must be multiples of this.
    """

    def __init__(self, net: nn.Module, sites: Sequence[str] = (), rate: float = 0.0, mode: str = "channel", stride: int | None = None) -> None:
        super().__init__()
        self.model = net
        self.sites = tuple(sites)
        self.dropouts = nn.ModuleList()
        self.staged = _is_staged(net)
        for index, site in enumerate(self.sites):
            drop = MCDropout(rate, mode, site=index)
            self.dropouts.append(drop)
            if site == HEAD_SITE:
                if not self.staged:
                    raise ValueError("dropout site 'head' needs a model with a 'segmentation_head'")
                cast(nn.Module, net.segmentation_head).register_forward_pre_hook(lambda _m, args, d=drop: (d(args[0]), *args[1:]))
            else:
                try:
                    module = net.get_submodule(site)
                except AttributeError as exc:
                    raise ValueError(f"dropout site {site!r} names no submodule of the model") from exc
                module.register_forward_hook(lambda _m, _args, out, d=drop: d(out))
        self.stride = int(stride or cast(int, getattr(getattr(net, "encoder", None), "output_stride", 32)))
        self.cacheable: list[nn.Module] = []
        self.kept: tuple[set[int], set[int]] = (set(), set())
        if self.first_stochastic_stage == "decoder":
            self.cacheable = self._probe_decoder()
            if self.cacheable:
                self.kept = self._probe_needed()

    def _probe_decoder(self) -> list[nn.Module]:
        """The decoder's cacheable submodules (:func:`~app.engine.decoder_cache.find_cacheable`), by one small forward."""
        site_modules = [self.model.get_submodule(site) for site in self.sites if site != HEAD_SITE]
        side = 4 * self.stride
        device = next(iter(self.model.parameters())).device
        training = self.model.training
        self.model.eval()
        try:
            return decoder_cache.find_cacheable(
                cast(nn.Module, self.model.decoder), lambda: self.model(torch.zeros(1, 3, side, side, device=device)), site_modules
            )
        finally:
            self.model.train(training)

    @property
    def first_stochastic_stage(self) -> str:
        """``"head"``, ``"decoder"``, ``"encoder"`` or ``"all"`` (no staging possible)."""
        if not self.staged:
            return "all"
        ranks = [_stage_rank(site) for site in self.sites] or [len(STAGES) - 1]
        return "all" if min(ranks) < 0 else STAGES[min(ranks)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full forward: ``(B, 3, H, W)`` → ``(B, C, H, W)`` logits."""
        out = self.model(x)
        logits: torch.Tensor = out[0] if isinstance(out, (tuple, list)) else out
        return logits

    def _probe_needed(self) -> tuple[set[int], set[int]]:
        """Which features and cached outputs MC passes read (:func:`~app.engine.decoder_cache.needed`), on a small input."""
        decoder = cast(nn.Module, self.model.decoder)
        side = 4 * self.stride
        device = next(iter(self.model.parameters())).device
        training = self.model.training
        self.model.eval()

        def run(features: list[Any], outputs: dict[int, Any]) -> torch.Tensor:
            with decoder_cache.replaying(outputs, 1):
                out: torch.Tensor = decoder(features)
            return out

        try:
            with torch.inference_mode(), decoder_cache.installed(self.cacheable):
                features = list(cast(nn.Module, self.model.encoder)(torch.zeros(1, 3, side, side, device=device)))
                with decoder_cache.recording() as outputs:
                    decoder(features)
                return decoder_cache.needed(run, features, dict(outputs))
        finally:
            self.model.train(training)

    def prefix(self, x: torch.Tensor) -> Any:
        """Run the deterministic stages before the first dropout site once."""
        stage = self.first_stochastic_stage
        if stage in ("all", "encoder"):
            return x
        features = cast(nn.Module, self.model.encoder)(x)
        if stage == "decoder":
            if not self.cacheable:
                return features
            with decoder_cache.installed(self.cacheable), decoder_cache.recording() as outputs:
                cast(nn.Module, self.model.decoder)(features)
            need_f, need_o = self.kept
            kept_features = [f if i in need_f else decoder_cache.placeholder(f) for i, f in enumerate(features)]
            kept = tuple(outputs.get(i) if i in need_o else decoder_cache.placeholder(outputs.get(i)) for i in range(len(self.cacheable)))
            return decoder_cache.DecoderCache(kept_features, kept)
        return cast(nn.Module, self.model.decoder)(features)

    def tail(self, cached: Any, copies: int) -> torch.Tensor:
        """Run the stochastic stages on ``copies`` sample-major copies of ``cached``.

        Returns:
            ``(copies * B, C, H, W)`` logits.
        """
        stage = self.first_stochastic_stage
        if stage in ("all", "encoder"):
            return self.forward(cached.repeat(copies, 1, 1, 1))
        if isinstance(cached, decoder_cache.DecoderCache):
            features = decoder_cache.expand_copies(cached.features, copies)
            with decoder_cache.installed(self.cacheable), decoder_cache.replaying(cached.outputs, copies):
                decoded = cast(nn.Module, self.model.decoder)(features)
        elif stage == "decoder":
            features = [f.repeat(copies, *([1] * (f.dim() - 1))) for f in cached]
            decoded = cast(nn.Module, self.model.decoder)(features)
        else:
            decoded = cached if copies == 1 else cached.repeat(copies, 1, 1, 1)
        logits: torch.Tensor = cast(nn.Module, self.model.segmentation_head)(decoded)
        return logits
