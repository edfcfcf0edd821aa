"""torchvision's segmentation models (DeepLabV3, FCN, LR-ASPP): their own dropout as MC sites, prefix caching of the
backbone, exactness against the plain model, a textbook MC reference, and a bundle analysed end to end."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.models import segmentation

from app.cli import main
from app.engine.device import place
from app.engine.dropout import MCDropout, sampling_plan
from app.engine.factorised_head import factorisable
from app.engine.sampling import SamplingOptions, run_mc
from app.engine.tiled_head import tileable
from app.engine.torchvision_net import TorchvisionNet
from app.io.bundle import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, BundleError, load_bundle
from app.io.torchvision_models import BUILDERS, TORCHVISION_PREFIX, default_dropout

DEEPLAB, FCN, LRASPP = "deeplabv3_mobilenet_v3_large", "fcn_resnet50", "lraspp_mobilenet_v3_large"


def _model(builder: str, seed: int = 0, classes: int = 3, **kwargs: object) -> nn.Module:
    """A seeded, randomly initialised model with non-trivial BatchNorm statistics and confident logits."""
    torch.manual_seed(seed)
    model: nn.Module = getattr(segmentation, builder)(weights=None, weights_backbone=None, num_classes=classes, **kwargs).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        last = [m for m in model.get_submodule("classifier").modules() if isinstance(m, nn.Conv2d)][-1]
        last.weight.mul_(5.0)
    return model


def _net(builder: str, sites: list[str] | None = None, seed: int = 0) -> tuple[TorchvisionNet, nn.Module]:
    """The wrapped model (default dropout of its builder) and an untouched copy of the plain model."""
    model = _model(builder, seed)
    plain = copy.deepcopy(model)
    d = default_dropout({"arch": TORCHVISION_PREFIX + builder})
    return TorchvisionNet(model, sites if sites is not None else d.sites, d.rate, d.mode, BUILDERS[builder][0]).eval(), plain


def _x(h: int = 64, w: int = 80, b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("builder", "path", "p"), [(DEEPLAB, "classifier.0.project.3", 0.5), ("deeplabv3_resnet50", "classifier.0.project.3", 0.5), (FCN, "classifier.3", 0.1)]
)
def test_default_sites_are_the_models_own_trained_dropout(builder: str, path: str, p: float) -> None:
    """The default dropout names the one nn.Dropout outside the aux head, at its rate; wrapping replaces it in place."""
    d = default_dropout({"arch": TORCHVISION_PREFIX + builder})
    model = _model(builder, aux_loss=True)
    own = {name: m.p for name, m in model.named_modules() if isinstance(m, nn.Dropout) and not name.startswith("aux_classifier")}
    assert own == {path: p} and d.sites == [path] and d.rate == p and d.mode == "element" and d.trained_with_dropout
    net = TorchvisionNet(model, d.sites, d.rate, d.mode, BUILDERS[builder][0])
    assert model.get_submodule(path) is net.dropouts[0] and isinstance(net.dropouts[0], MCDropout)


def test_lraspp_has_no_dropout_and_gets_it_added_at_inference() -> None:
    """LR-ASPP trains without dropout: the default adds channel dropout on classifier.cbr, marked not trained."""
    model = _model(LRASPP)
    assert not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
    d = default_dropout({"arch": TORCHVISION_PREFIX + LRASPP})
    assert d.sites == ["classifier.cbr"] and d.mode == "channel" and d.trained_with_dropout is False


@pytest.mark.parametrize(
    ("builder", "sites", "first"),
    [
        (DEEPLAB, None, "classifier.0.project.3"),
        (DEEPLAB, ["classifier.0.convs.1"], "classifier.0.convs"),
        (DEEPLAB, ["classifier.0.project"], "classifier.0.project"),
        (DEEPLAB, ["classifier.0.project.3", "backbone.16"], "backbone"),
        (FCN, None, "classifier.3"),
        (LRASPP, None, "classifier"),
    ],
)
def test_prefix_tail_under_plan_equals_full_forward_per_sample(builder: str, sites: list[str] | None, first: str) -> None:
    """Batched tail over samples [0..2] equals one full forward of the model per sample with the same masks."""
    net, _ = _net(builder, sites)
    assert net.first_stochastic_stage == first
    x = _x()
    with torch.no_grad():
        cached = net.prefix(x)
        with sampling_plan(4, [0, 1, 2]):
            batched = net.tail(cached, 3)
        singles = []
        for t in range(3):
            with sampling_plan(4, [t]):
                singles.append(net(x))
        deterministic = net(x)
    assert batched.shape == (6, 3, 64, 80)
    torch.testing.assert_close(batched, torch.cat(singles), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(singles[0], deterministic, atol=1e-3)
    assert not torch.allclose(singles[0], singles[1], atol=1e-3)


@pytest.mark.parametrize("builder", [DEEPLAB, FCN, LRASPP])
def test_without_plan_the_wrapped_model_is_the_plain_model(builder: str) -> None:
    """No plan: forward and tail(prefix(x), k) equal the untouched torchvision model's "out" (k copies), at the input size."""
    net, plain = _net(builder)
    x = _x(h=48, w=96)
    with torch.no_grad():
        expected = plain(x)["out"]
        assert expected.shape == (2, 3, 48, 96)
        torch.testing.assert_close(net(x), expected, atol=0, rtol=0)
        torch.testing.assert_close(net.tail(net.prefix(x), 1), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net.tail(net.prefix(x), 3), expected.repeat(3, 1, 1, 1), atol=1e-5, rtol=1e-5)


def test_backbone_runs_once_per_image_not_per_sample() -> None:
    """The prefix holds the backbone and the ASPP up to its dropout: a tail of 5 samples runs neither."""
    net, _ = _net(DEEPLAB)
    calls = {"backbone": 0, "aspp": 0, "last": 0}
    net.model.get_submodule("backbone").register_forward_hook(lambda *_: calls.__setitem__("backbone", calls["backbone"] + 1))
    net.model.get_submodule("classifier.0.convs.0").register_forward_hook(lambda *_: calls.__setitem__("aspp", calls["aspp"] + 1))
    net.model.get_submodule("classifier.4").register_forward_hook(lambda *_: calls.__setitem__("last", calls["last"] + 1))
    with torch.no_grad(), sampling_plan(0, range(5)):
        net.tail(net.prefix(_x(b=1)), 5)
    assert calls == {"backbone": 1, "aspp": 1, "last": 1}


def test_fast_heads_never_apply() -> None:
    """The factorised and tiled heads are smp-only."""
    for builder in (DEEPLAB, LRASPP):
        net, _ = _net(builder)
        assert not factorisable(net) and not tileable(net)


def test_bad_sites_are_value_errors() -> None:
    """smp's 'head' and a path that names nothing are refused with the reason."""
    with pytest.raises(ValueError, match="'head' is for smp models"):
        _net(DEEPLAB, ["head"])
    with pytest.raises(ValueError, match=r"classifier\.9"):
        _net(DEEPLAB, ["classifier.9"])


@pytest.mark.slow
def test_mc_statistics_match_textbook_dropout_in_train_mode() -> None:
    """Image means of p̄ and of the per-class variance agree with the plain model, only its nn.Dropout in train mode."""
    samples = 400
    net, plain = _net(DEEPLAB, seed=1)
    x = _x(b=1, seed=5)
    plain.get_submodule("classifier.0.project.3").train()
    torch.manual_seed(0)
    with torch.no_grad():
        p = torch.cat([torch.softmax(plain(x.repeat(50, 1, 1, 1))["out"].double(), dim=1) for _ in range(samples // 50)])
    mean = p.mean(0)
    per_sample_p = p.mean((2, 3))
    per_sample_d = ((p - mean) ** 2).mean((2, 3))
    true_var = per_sample_d.mean(0)
    maps = run_mc(net, x, SamplingOptions(samples=samples, seed=0))
    engine_p = maps.mean_probs[0].double().mean((1, 2))
    engine_var = maps.class_variance[0].double().mean((1, 2))

    def se(values: torch.Tensor) -> torch.Tensor:
        return values.std(0) / math.sqrt(samples)

    both = math.sqrt(2.0)
    assert float(true_var.max()) > 1e-4  # dropout moves the prediction: the test has something to see
    assert ((engine_p - per_sample_p.mean(0)).abs() <= 5 * both * se(per_sample_p)).all(), (engine_p, per_sample_p.mean(0))
    assert ((engine_var - true_var).abs() <= 5 * both * se(per_sample_d) + true_var / samples).all(), (engine_var, true_var)
    assert (5 * both * se(per_sample_d) < 0.2 * true_var).all()  # tight enough to tell a rate of 0.5 from 0.4


def _write_png(path: Path, h: int, w: int) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_cli_export_state_dict_then_analyze(tmp_path: Path) -> None:
    """A DeepLabV3 .pth trained with aux_loss exports with --arch/--classes (aux left out), loads exactly, and analyzes."""
    model = _model(DEEPLAB, seed=2, aux_loss=True)
    torch.save(model.state_dict(), tmp_path / "deeplab.pth")
    arch = TORCHVISION_PREFIX + DEEPLAB
    assert main(["export", str(tmp_path / "deeplab.pth"), "--arch", arch, "--classes", "bg,road,car", "--out", str(tmp_path / "b")]) == 0
    assert not (tmp_path / "b" / CONFIG_FILE).exists()
    bundle = load_bundle(tmp_path / "b")
    assert bundle.notes == []
    card = bundle.card
    assert card.dropout.sites == ["classifier.0.project.3"] and card.dropout.rate == 0.5 and card.dropout.trained_with_dropout
    aux = sum(k.startswith("aux_classifier.") for k in model.state_dict())
    assert aux > 0
    assert [n.split(":")[0] for n in card.provenance["assumed"]] == ["normalization", "input.working_size", "dropout", f"{aux} aux_classifier tensors left out"]
    x = _x(b=1, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(bundle.net(x), place(model, "cpu")(x)["out"], atol=0, rtol=0)
    _write_png(tmp_path / "scene.png", 45, 70)
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "scene.png"), "--model", str(tmp_path / "b"), "--samples", "4", "--out", str(out), "--quiet"]) == 0
    with np.load(out / "scene" / "maps.npz") as data:
        assert data["prediction"].shape == (45, 70)
        assert float(data["mutual_information"].max()) > 0
    analysis = json.loads((out / "scene" / "analysis.json").read_text())
    assert analysis["dropout_added_at_inference"] is False and [c["name"] for c in analysis["classes"]] == ["bg", "road", "car"]


def test_hand_written_card_with_safetensors_and_aux_weights_in_the_bundle(tmp_path: Path) -> None:
    """A card naming an LR-ASPP builder, no dropout section: inference-added dropout, reported; FCN (torchvision's num_classes) with aux keys."""
    folder = tmp_path / "lraspp"
    folder.mkdir()
    model = _model(LRASPP, seed=4)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_FILE))
    classes = [{"name": n, "colour": "#000000"} for n in ("bg", "a", "b")]
    (folder / CARD_FILE).write_text(
        json.dumps({"name": "lr", "architecture": {"arch": TORCHVISION_PREFIX + LRASPP, "classes": 3, "weights_backbone": "IMAGENET1K_V1"}, "classes": classes})
    )
    bundle = load_bundle(folder)
    assert bundle.card.dropout.sites == ["classifier.cbr"] and bundle.card.dropout.trained_with_dropout is False
    assert [n.split(":")[0] for n in bundle.notes] == ["dropout", "architecture.weights_backbone='IMAGENET1K_V1' ignored"]
    with torch.no_grad():
        torch.testing.assert_close(bundle.net(_x(b=1)), place(model, "cpu")(_x(b=1))["out"], atol=0, rtol=0)
    fcn = _model(FCN, seed=5, aux_loss=True)
    save_file({k: v.contiguous() for k, v in fcn.state_dict().items()}, str(folder / WEIGHTS_FILE))
    (folder / CARD_FILE).write_text(json.dumps({"name": "fcn", "architecture": {"arch": TORCHVISION_PREFIX + FCN, "num_classes": 3}, "classes": classes}))
    aux = sum(k.startswith("aux_classifier.") for k in fcn.state_dict())
    assert load_bundle(folder).notes[-1].startswith(f"{aux} aux_classifier tensors in model.safetensors left out")


def test_unknown_builder_is_a_bundle_error_listing_the_supported_ones(tmp_path: Path) -> None:
    classes = [{"name": n, "colour": "#000000"} for n in ("bg", "a")]
    (tmp_path / CARD_FILE).write_text(json.dumps({"name": "x", "architecture": {"arch": TORCHVISION_PREFIX + "maskrcnn", "classes": 2}, "classes": classes}))
    with pytest.raises(BundleError, match=r"not a supported torchvision builder.*fcn_resnet50"):
        load_bundle(tmp_path)
