"""The shipped model's MC maps against a textbook re-implementation: ``nn.Dropout2d`` in train mode before the head.

The reference loads the bundle's weights into a fresh smp model (no hooks, no staging, no factorised or tiled head, no
seeded masks) and draws ``T`` samples with ``torch.nn.Dropout2d(p=rate).train()`` on the decoder output and the global
RNG. Both sides are Monte-Carlo estimates, so they are compared on image means with a tolerance of 5 combined standard
errors measured from the reference's own samples (the engine's stratified masks are no noisier than i.i.d. ones).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import load_file

from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import WEIGHTS_FILE, load_bundle
from app.io.resources import models_dir
from app.io.synthetic import iter_split

SAMPLES = 1000


def _input(card_mean: Sequence[float], card_std: Sequence[float]) -> torch.Tensor:
    rgb = next(iter_split("ood", 1, size=128, seed=7)).image
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0
    return ((x - torch.tensor(card_mean).view(3, 1, 1)) / torch.tensor(card_std).view(3, 1, 1)).unsqueeze(0)


@pytest.mark.slow
def test_shipped_model_matches_textbook_dropout2d_within_mc_error() -> None:
    """Image means of p̄ (per class), expected entropy and per-class variance agree within 5 combined standard errors."""
    bundle = load_bundle("default")
    card = bundle.card
    x = _input(card.normalization.mean, card.normalization.std)
    model = smp.create_model(**{k: v for k, v in card.architecture.items() if k != "encoder_weights"}, encoder_weights=None)
    model.load_state_dict(load_file(str(models_dir() / "default" / WEIGHTS_FILE)), strict=True)
    model.eval()
    dropout = torch.nn.Dropout2d(p=card.dropout.rate).train()
    torch.manual_seed(0)
    probs = []
    with torch.no_grad():
        decoded = model.decoder(model.encoder(x))
        for _ in range(SAMPLES // 50):
            probs.append(torch.softmax(model.segmentation_head(dropout(decoded.repeat(50, 1, 1, 1))).double(), dim=1))
    p = torch.cat(probs)  # (T, C, H, W)
    mean = p.mean(0)
    per_sample_p = p.mean((2, 3))  # (T, C): image mean of each class probability, per sample
    per_sample_h = torch.special.entr(p).sum(1).mean((1, 2))  # (T,): image mean of H[p_t]
    per_sample_d = ((p - mean) ** 2).mean((2, 3))  # (T, C): image mean of the squared deviation, per class
    true_var = per_sample_d.mean(0)

    maps = run_mc(bundle.net, x, SamplingOptions(samples=SAMPLES, seed=0))
    engine_p = maps.mean_probs[0].double().mean((1, 2))
    engine_h = maps.expected_entropy[0].double().mean()
    engine_var = maps.class_variance[0].double().mean((1, 2))

    def se(values: torch.Tensor) -> torch.Tensor:
        return values.std(0) / math.sqrt(SAMPLES)

    both = math.sqrt(2.0)
    assert float(per_sample_h.mean()) > 0.05 and float(true_var.max()) > 1e-3  # an uncertain scene: the test has something to see
    assert ((engine_p - per_sample_p.mean(0)).abs() <= 5 * both * se(per_sample_p) + 1e-7).all(), (engine_p, per_sample_p.mean(0), se(per_sample_p))
    assert abs(float(engine_h - per_sample_h.mean())) <= 5 * both * float(se(per_sample_h)), (engine_h, per_sample_h.mean(), se(per_sample_h))
    # E[population variance] lies between (T-1)/T σ² (i.i.d.) and σ² (stratified, at most): allow σ²/T on top
    assert ((engine_var - true_var).abs() <= 5 * both * se(per_sample_d) + true_var / SAMPLES + 1e-9).all(), (engine_var, true_var, se(per_sample_d))
    assert float(5 * both * se(per_sample_h)) < 0.15 * float(per_sample_h.mean())  # tight enough to see a 0.2 → 0.23 rate
