"""Dynamic batching: throughput of N concurrent clients against the in-process analysis service, batching off and on.

Three configurations of :class:`~app.web.service.AnalysisService` with the same model, device and threads, side by
side in one run, each driven for ``--window`` seconds in all by ``--clients`` closed-loop clients (each sends its next
request as soon as it has its answer), every request a 600x400 JPEG (``skimage.data.coffee``, analysed at the
model's working size) with its own seed. The window is cut into ``--rounds`` slices that visit the configurations
in turn, so a neighbour's load on a shared machine falls on all three alike:

- ``one at a time``: ``SEGU_MAX_CONCURRENT=1``, no batching (the server's defaults);
- ``concurrent``: ``SEGU_MAX_CONCURRENT=N``, no batching (``SEGU_MAX_BATCH_SIZE=1``);
- ``batched``: ``SEGU_MAX_CONCURRENT=N``, ``SEGU_MAX_BATCH_SIZE=N``, ``SEGU_MAX_WAIT_MS=--wait-ms``.

The clients call the service directly (admission, worker threads, decoding, analysis; no HTTP and no JSON
encoding, which batching does not change), so the figures are the engine's. Prints requests/s, latency p50 and
the mean batch size (from the service's ``segu_batch_size`` histogram) per configuration, then the ratios; first,
the bound on what batching can gain here: ``N`` prefix passes of one image against one pass of ``N`` images.

Usage: python benchmarks/batching.py [--clients 4] [--window 15] [--rounds 5] [--samples 20] [--wait-ms 10] [--device auto] [--threads 0]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from dataclasses import dataclass, field

import anyio
import numpy as np
import torch
from PIL import Image

from app.engine.device import resolve_device
from app.engine.geometry import pad_to_stride, to_tensor
from app.io.bundle import Bundle, load_bundle
from app.io.decoding import decode_image
from app.io.resize import resize_rgb, working_shape
from app.request import AnalysisRequest
from app.web.service import AnalysisService
from app.web.settings import Settings

WARM_ROUNDS = 2


@dataclass
class Result:
    """One configuration's windows, added up."""

    name: str
    service: AnalysisService
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    batches: float = 0.0
    images: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def mean_batch(self) -> float:
        return self.images / self.batches if self.batches else 0.0


def coffee_jpeg() -> bytes:
    """``skimage.data.coffee`` (600x400) as a quality-90 JPEG; random blobs when scikit-image is missing."""
    try:
        from skimage import data

        rgb = data.coffee()
    except ImportError:
        small = np.random.default_rng(0).integers(0, 256, size=(50, 75, 3), dtype=np.uint8)
        rgb = np.asarray(Image.fromarray(small).resize((600, 400), Image.Resampling.BILINEAR))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


async def drive(service: AnalysisService, image: bytes, clients: int, samples: int, seconds: float) -> tuple[int, float, list[float]]:
    """Closed-loop clients for ``seconds`` (at least one request each); requests in flight at the end are finished and counted."""
    latencies: list[float] = []
    start = time.perf_counter()
    end = start + seconds

    async def client(index: int) -> None:
        request = 0
        while request == 0 or time.perf_counter() < end:
            sent = time.perf_counter()
            await service.analyze(io.BytesIO(image), lambda a: a.samples, AnalysisRequest(samples=samples, seed=index * 100_000 + request))
            latencies.append(time.perf_counter() - sent)
            request += 1

    async with anyio.create_task_group() as tg:
        for index in range(clients):
            tg.start_soon(client, index)
    return len(latencies), time.perf_counter() - start, latencies


def measure(result: Result, image: bytes, args: argparse.Namespace, seconds: float) -> None:
    """Drive ``result``'s service for ``seconds`` and add what it did to ``result``."""
    before = _histogram(result.service)
    count, elapsed, latencies = anyio.run(drive, result.service, image, args.clients, args.samples, seconds)
    after = _histogram(result.service)
    result.requests += count
    result.seconds += elapsed
    result.latencies += latencies
    result.batches += after[0] - before[0]
    result.images += after[1] - before[1]


def prefix_bound(bundle: Bundle, device: torch.device, image: bytes, n: int, repeats: int = 7) -> tuple[float, float]:
    """Median seconds of ``n`` prefix passes of the analysed image one at a time, and of one pass of ``n`` copies."""
    rgb = decode_image(image, 10**8)
    analysed = resize_rgb(rgb, working_shape(rgb.shape[0], rgb.shape[1], bundle.card.input.working_size))
    norm = bundle.card.normalization
    x, _ = pad_to_stride(to_tensor(analysed, norm.mean, norm.std).to(device), bundle.net.stride)
    batch = x.repeat(n, 1, 1, 1)
    singles, batched = [], []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(n):
                bundle.net.prefix(x)
            _sync(device)
            singles.append(time.perf_counter() - start)
            start = time.perf_counter()
            bundle.net.prefix(batch)
            _sync(device)
            batched.append(time.perf_counter() - start)
    return statistics.median(singles), statistics.median(batched)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _histogram(service: AnalysisService) -> tuple[float, float]:
    registry = service.metrics.registry
    return registry.get_sample_value("segu_batch_size_count") or 0.0, registry.get_sample_value("segu_batch_size_sum") or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--window", type=float, default=15.0, help="seconds of load per configuration, all rounds together")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--wait-ms", type=float, default=10.0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    bundle = load_bundle(args.model, device)
    image = coffee_jpeg()
    n = args.clients
    base = {
        "model": args.model,
        "device": args.device,
        "warmup": False,
        "max_queue": n,
        "max_samples": max(args.samples, 1),
        "default_samples": args.samples,
        "cache_entries": 0,
    }
    configs = [
        ("one at a time", Settings(**base, max_concurrent=1, max_batch_size=1)),
        ("concurrent", Settings(**base, max_concurrent=n, max_batch_size=1)),
        ("batched", Settings(**base, max_concurrent=n, max_batch_size=n, max_wait_ms=args.wait_ms)),
    ]
    print(f"device {device}, torch threads {torch.get_num_threads()}, {n} clients, {args.samples} samples, {args.window:g} s per configuration")
    single, together = prefix_bound(bundle, device, image, n)
    print(
        f"prefix pass ({bundle.net.first_stochastic_stage} site): {n} x one image {single * 1000:.0f} ms, one batch of {n} {together * 1000:.0f} ms "
        f"({single / together:.2f}x)"
    )
    results = [Result(name, AnalysisService(bundle, device, settings)) for name, settings in configs]
    for result in results:
        for _ in range(WARM_ROUNDS):
            anyio.run(drive, result.service, image, n, args.samples, 0.0)  # one request per client: lazy initialisation
    for index in range(args.rounds):
        for result in results[index % 3 :] + results[: index % 3]:
            measure(result, image, args, args.window / args.rounds)
    print(f"{'configuration':<15}{'requests':>10}{'req/s':>9}{'p50 s':>8}{'mean batch':>12}")
    for r in results:
        print(f"{r.name:<15}{r.requests:>10}{r.rate:>9.2f}{statistics.median(r.latencies):>8.2f}{r.mean_batch:>12.2f}")
    one, concurrent, batched = results
    print(f"batched / concurrent: {batched.rate / concurrent.rate:.2f}x   batched / one at a time: {batched.rate / one.rate:.2f}x")


if __name__ == "__main__":
    main()
