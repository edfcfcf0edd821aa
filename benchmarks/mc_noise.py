"""How much MC noise and bias the maps carry, by T and mask scheme, against the exact values of the shipped model.

The default model's only dropout is channel dropout on the 16 input channels of a linear head, so the exact MC
expectation is a finite sum: every one of the 2^16 keep-masks, weighted by its probability (0.8^kept · 0.2^dropped).
For each image the exact maps are computed from that sum (E[p], E[p²], E[H(p_t)] per pixel): mutual information
H(E p) − E H(p_t), the variance of the class argmax E[p], and the predictive entropy H(E p). Then, for each T and mask
scheme (``stratified``, ``iid``), the engine analyses the image with 10 seeds, and the image means of its maps give

- bias: mean over seeds − exact (relative to exact, in %, with its standard error over images and seeds), and sd:
  the seed-to-seed standard deviation (relative, in %);
- r(MI map): the mean and the lowest correlation over seeds between the MI map and the exact MI map;
- reported SE / sd: the root-mean-square of the jackknife standard error each analysis reports for its image mean
  (:mod:`app.maps.mc_error`), over the seed-to-seed sd it should predict (1 = calibrated, > 1 = conservative);
- coverage: the share of (seed) analyses whose interval mean ± 1.96 reported SE holds the exact value (target 0.90-0.98);
- ms: median wall time of one ``run_mc`` (deterministic prefix + T samples), 1 thread.

Estimators: ``sampled`` (the textbook plug-in, per mask scheme) and ``rao_blackwellised`` (``--enumerated`` channels per
pixel summed exactly, i.i.d. draws, bias-corrected; :mod:`app.maps.rao_blackwell`), opt-in, and ``propagated`` (the same
channels exact, the rest to second order, nothing sampled: sd 0, no error bars; :mod:`app.maps.propagation`).

Images: synthetic test and OOD scenes (128×128) and skimage's coffee photo resized to long side 256. The exact sums
are cached under ``--cache`` (they take minutes per image on a CPU).

Usage: python benchmarks/mc_noise.py [--seeds 40] [--samples 5 10 20 50 100] [--estimators sampled rao_blackwellised propagated] [--enumerated 3]
       [--threads 1] [--cache runs/mc_noise]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from app.defaults import ENUMERATED_CHANNELS
from app.engine.dropout import MCDropout
from app.engine.factorised_head import factorisable, head_after_is_identity
from app.engine.geometry import crop, pad_to_stride, to_tensor
from app.engine.network import SegmentationNet
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import load_bundle
from app.io.synthetic import make_scene
from app.maps.mc_error import jackknife_se

MAPS = ("mutual_information", "variance", "entropy")
SCHEMES = ("iid", "stratified")


def resized_photo(name: str, long_side: int) -> np.ndarray:
    """``skimage.data.<name>()`` resized (Lanczos) to a longer side of ``long_side``, as ``(H, W, 3)`` uint8."""
    import skimage.data

    photo = Image.fromarray(getattr(skimage.data, name)())
    scale = long_side / max(photo.size)
    return np.asarray(photo.resize((round(photo.size[0] * scale), round(photo.size[1] * scale)), Image.Resampling.LANCZOS))


def images() -> dict[str, np.ndarray]:
    """The benchmark images as ``(H, W, 3)`` uint8."""
    return {
        "test scene 0": make_scene("test", 0, size=128, seed=0).image,
        "test scene 1": make_scene("test", 1, size=128, seed=0).image,
        "ood scene 0": make_scene("ood", 0, size=128, seed=0).image,
        "coffee (photo)": resized_photo("coffee", 256),
    }


@dataclass
class Runs:
    """Per seed: the image mean of each map, the MI map and the wall time of one analysis."""

    means: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in MAPS})
    errors: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in MAPS})
    mi_maps: list[np.ndarray] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _dropout(net: SegmentationNet) -> MCDropout:
    return cast(MCDropout, net.dropouts[0])


def exact_maps(net: SegmentationNet, x: torch.Tensor, size: tuple[int, int], chunk: int = 512) -> tuple[dict[str, float], np.ndarray]:
    """Image means of the exact maps, summed over all 2^K head masks, and the exact MI map."""
    if not (factorisable(net) and head_after_is_identity(net)):
        raise SystemExit("exact enumeration needs a linear head with channel dropout only (the default model)")
    conv = cast(nn.Conv2d, cast(nn.Sequential, net.model.segmentation_head)[0])
    rate = _dropout(net).p
    with torch.inference_mode():
        decoded = net.prefix(x)
        k = decoded.shape[1]
        parts = torch.cat([F.conv2d(decoded[:, i : i + 1], conv.weight[:, i : i + 1], None, conv.stride, conv.padding) for i in range(k)])
        c, n = parts.shape[1], parts.shape[2] * parts.shape[3]
        flat = parts.reshape(k, c * n)
        bias = conv.bias.view(1, c, 1) if conv.bias is not None else 0.0
        sum_p = torch.zeros(c, n, dtype=torch.float64)
        sum_p2 = torch.zeros(c, n, dtype=torch.float64)
        sum_h = torch.zeros(n, dtype=torch.float64)
        keeps = torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)))
        weights = torch.prod(keeps.double() * (1.0 - rate) + (1.0 - keeps.double()) * rate, dim=1)
        assert abs(float(weights.sum()) - 1.0) < 1e-9
        for start in range(0, keeps.shape[0], chunk):
            m, w = keeps[start : start + chunk] / (1.0 - rate), weights[start : start + chunk].float()
            p = torch.softmax((m @ flat).view(-1, c, n) + bias, dim=1)
            sum_p += (w @ p.view(-1, c * n)).view(c, n).double()
            sum_p2 += (w @ (p * p).view(-1, c * n)).view(c, n).double()
            sum_h += (w @ torch.special.entr(p).sum(1)).double()
    h, wd = parts.shape[2:]
    mean, mean2, exp_h = sum_p.view(c, h, wd), sum_p2.view(c, h, wd), sum_h.view(h, wd)
    entropy = torch.special.entr(mean).sum(0)
    pred = mean.argmax(0, keepdim=True)
    variance = (mean2.gather(0, pred) - mean.gather(0, pred) ** 2)[0]
    mi = (entropy - exp_h).clamp(min=0)
    out = {name: crop(v, size) for name, v in (("mutual_information", mi), ("variance", variance), ("entropy", entropy))}
    return {name: float(v.mean()) for name, v in out.items()}, out["mutual_information"].float().numpy()


def mc_runs(net: SegmentationNet, x: torch.Tensor, size: tuple[int, int], samples: int, scheme: str, seeds: int, estimator: str, enumerated: int) -> Runs:
    """Analyse ``x`` once per seed with ``samples`` MC samples, masks of ``scheme`` and ``estimator``."""
    _dropout(net).scheme = scheme
    runs = Runs()
    for seed in range(seeds):
        start = time.perf_counter()
        maps = run_mc(net, x, SamplingOptions(samples=samples, seed=seed, estimator=estimator, enumerated=enumerated))  # type: ignore[arg-type]
        runs.seconds.append(time.perf_counter() - start)
        scalar = maps.scalar_maps()
        for name in MAPS:
            runs.means[name].append(float(crop(scalar[name][0], size).double().mean()))
            if maps.replicates is not None:
                replicate_means = crop(maps.replicates[name][0], size).double().mean(dim=(-2, -1)).numpy()
                runs.errors[name].append(jackknife_se(replicate_means))
        runs.mi_maps.append(crop(scalar["mutual_information"][0], size).numpy())
    return runs


def main() -> int:
    """Exact sums (cached), MC runs, tables."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--seeds", type=int, default=40)
    p.add_argument("--estimators", nargs="+", default=["sampled", "rao_blackwellised"], choices=["sampled", "rao_blackwellised", "propagated"])
    p.add_argument("--enumerated", type=int, default=ENUMERATED_CHANNELS)
    p.add_argument("--samples", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=Path, default=Path("runs/mc_noise"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.model)
    net, card = bundle.net, bundle.card
    args.cache.mkdir(parents=True, exist_ok=True)
    rows: dict[tuple[int, str], list[dict[str, float]]] = {}
    configs = [(e, scheme) for e in args.estimators for scheme in (SCHEMES if e == "sampled" else ("iid",))]
    detail = ["| image | map | exact | T | scheme | mean over seeds | sd | bias % | sd % |", "|---|---|---|---|---|---|---|---|---|"]
    for label, rgb in images().items():
        x, size = pad_to_stride(to_tensor(rgb, tuple(card.normalization.mean), tuple(card.normalization.std)), net.stride)
        cache = args.cache / f"exact-{label.split(' (')[0].replace(' ', '-')}.npz"
        if cache.exists():
            with np.load(cache) as data:
                exact, exact_mi = {name: float(data[name]) for name in MAPS}, data["mi_map"]
        else:
            start = time.perf_counter()
            exact, exact_mi = exact_maps(net, x, size)
            np.savez(cache, mi_map=exact_mi, mutual_information=exact["mutual_information"], variance=exact["variance"], entropy=exact["entropy"])
            print(f"{label}: exact sums over 2^16 masks in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        for samples in args.samples:
            for estimator, scheme in configs:
                label_masks = scheme if estimator == "sampled" else f"{estimator} k={args.enumerated}"
                runs = mc_runs(net, x, size, samples, scheme, args.seeds, estimator, args.enumerated)
                row: dict[str, float] = {"ms": 1000 * statistics.median(runs.seconds)}
                for name in MAPS:
                    values = runs.means[name]
                    mean, sd = statistics.fmean(values), statistics.stdev(values)
                    row[f"{name} bias"] = 100 * (mean - exact[name]) / exact[name]
                    row[f"{name} sd"] = 100 * sd / exact[name]
                    errors = runs.errors[name]
                    row[f"{name} se/sd"] = statistics.fmean(e * e for e in errors) ** 0.5 / sd if errors and sd > 0 else float("nan")
                    row[f"{name} cover"] = (
                        statistics.fmean(abs(v - exact[name]) <= 1.96 * e for v, e in zip(values, errors, strict=True)) if errors else float("nan")
                    )
                    detail.append(
                        f"| {label} | {name} | {exact[name]:.5f} | {samples} | {label_masks} | {mean:.5f} | {sd:.5f} | "
                        f"{row[f'{name} bias']:+.1f} | {row[f'{name} sd']:.1f} |"
                    )
                correlations = [float(np.corrcoef(m.ravel(), exact_mi.ravel())[0, 1]) for m in runs.mi_maps]
                row["r"], row["r mean"] = min(correlations), statistics.fmean(correlations)
                rows.setdefault((samples, label_masks), []).append(row)
                print(f"{label} T={samples} {label_masks}: done", file=sys.stderr)
    _dropout(net).scheme = "stratified"
    head = (
        "| T | masks | MI bias % | MI sd % | variance bias % | variance sd % | entropy bias % | entropy sd % | r(MI map) mean, min | "
        "reported SE / sd (MI, variance, entropy) | coverage of ±1.96 SE (MI, variance, entropy) | ms / analysis |"
    )
    summary = [
        f"Mean over {len(images())} images of bias ± its standard error and seed-to-seed sd ({args.seeds} seeds), in % of the exact value.",
        "",
        head,
        "|" + "---|" * 12,
    ]
    for (samples, scheme), per_image in rows.items():
        avg = {key: statistics.fmean(r[key] for r in per_image) for key in per_image[0]}
        se = [statistics.fmean(r[f"{name} sd"] ** 2 for r in per_image) ** 0.5 / (len(per_image) * args.seeds) ** 0.5 for name in MAPS]
        cells = [f"{avg[f'{name} bias']:+.1f} ± {se[i]:.1f} | {avg[f'{name} sd']:.1f}" for i, name in enumerate(MAPS)]
        r_text = f"{avg['r mean']:.3f}, {min(r['r'] for r in per_image):.3f}"
        ratios = ", ".join(f"{avg[f'{name} se/sd']:.2f}" for name in MAPS)
        cover = ", ".join(f"{avg[f'{name} cover']:.2f}" for name in MAPS)
        summary.append(f"| {samples} | {scheme} | " + " | ".join(cells) + f" | {r_text} | {ratios} | {cover} | {avg['ms']:.0f} |")
    print("\n".join(summary))
    print()
    print("\n".join(detail))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
