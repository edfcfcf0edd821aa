"""torchvision segmentation models under MC dropout: prefix caching against one full forward per sample.

For each builder a randomly initialised model (weights do not change the cost) is wrapped as a bundle would wrap it,
with its default dropout (DeepLabV3, FCN: their own trained ``nn.Dropout``; LR-ASPP: channel dropout on
``classifier.cbr``). Three methods, interleaved over rounds, median seconds: (a) one deterministic pass,
(b) ``strategy="full"`` (the whole model per sample, masks as in (c)), (c) ``strategy="cached"`` (backbone, and for
DeepLabV3 the ASPP up to its dropout, once; the rest per sample). Both (b) and (c) give the same maps.

Usage: python benchmarks/torchvision_mc.py [--size 512] [--samples 20] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import ClassInfo, ModelCard, build_network
from app.io.torchvision_models import TORCHVISION_PREFIX, default_dropout

BUILDERS = ("deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "fcn_resnet50")


def _net(builder: str) -> torch.nn.Module:
    arch = {"arch": TORCHVISION_PREFIX + builder, "classes": 5}
    classes = [ClassInfo(name=f"c{i}", colour="#000000") for i in range(5)]
    torch.manual_seed(0)
    return build_network(ModelCard(name=builder, architecture=arch, classes=classes, dropout=default_dropout(arch))).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    print(f"{args.size}x{args.size}, T={args.samples}, {args.threads} threads, median of {args.rounds} rounds")
    print(f"{'model':32} {'(a) 1 pass':>11} {'(b) full':>10} {'(c) cached':>11} {'(b)/(c)':>8} {'(c)/(a)':>8}  first step per sample")
    for builder in BUILDERS:
        net = _net(builder)
        methods = {
            "a": SamplingOptions(samples=0),
            "b": SamplingOptions(samples=args.samples, strategy="full"),
            "c": SamplingOptions(samples=args.samples, strategy="cached"),
        }
        run_mc(net, x, methods["c"])  # warm-up
        times: dict[str, list[float]] = {k: [] for k in methods}
        for _ in range(args.rounds):
            for key, options in methods.items():
                start = time.perf_counter()
                run_mc(net, x, options)
                times[key].append(time.perf_counter() - start)
        a, b, c = (statistics.median(times[k]) for k in "abc")
        stage = getattr(net, "first_stochastic_stage", "?")
        print(f"{builder:32} {a:10.3f}s {b:9.3f}s {c:10.3f}s {b / c:7.1f}x {c / a:7.2f}x  {stage}")


if __name__ == "__main__":
    main()
