"""models/person: MediaPipe's selfie segmenter, imported from its npm package by scripts/import_selfie_segmenter.py.

Verified, not assumed: the PyTorch module equals the TFLite runtime on real photos; the shipped weights are what the
script writes from the pinned npm package; the person mask covers the astronaut and not the shuttle; the engine runs
it with inserted MC dropout. The npm package comes from ``npm ci`` (``make test`` runs it through ``make jslint``).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import skimage.data
import torch
from ai_edge_litert.interpreter import Interpreter
from PIL import Image
from safetensors.torch import load_file

from app.engine.selfie_net import SELFIE_STRIDE, SelfieSegmenter
from app.io.bundle import CARD_FILE, WEIGHTS_FILE, BundleError, load_bundle, read_card
from app.io.card import validate_card
from app.io.resources import models_dir
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

ROOT = Path(__file__).resolve().parents[1]
TFLITE = ROOT / "node_modules" / "@mediapipe" / "selfie_segmentation" / "selfie_segmentation.tflite"
# Photos that ship inside scikit-image (no download); grayscale ones are repeated into RGB.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "camera")
TOLERANCE = 1e-3


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_selfie_segmenter", ROOT / "scripts" / "import_selfie_segmenter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tflite_path() -> Path:
    """The pinned npm package's model; its absence fails (never skips) the tests that need it."""
    if not TFLITE.is_file():
        pytest.fail(
            f"{TFLITE.relative_to(ROOT)} is missing: run `npm ci` in {ROOT} (package.json pins @mediapipe/selfie_segmentation; "
            "`make test` runs it through `make jslint`)"
        )
    return TFLITE


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return _script()


@pytest.fixture(scope="module")
def converted(script: ModuleType, tflite_path: Path) -> SelfieSegmenter:
    model: SelfieSegmenter = script.convert(tflite_path)
    return model


def _photo(name: str, size: int = 256) -> np.ndarray:
    """``(size, size, 3)`` uint8 RGB of a skimage.data photo."""
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.asarray(Image.fromarray(image[..., :3]).resize((size, size), Image.Resampling.BILINEAR))


def _tflite_person(interpreter: Interpreter, rgb: np.ndarray) -> np.ndarray:
    """The TFLite runtime's ``(256, 256)`` person probability of uint8 RGB (input ``[0, 1]`` NHWC, as MediaPipe feeds it)."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], (rgb.astype(np.float32) / 255.0)[None])
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0, ..., 0])


def _torch_person(model: torch.nn.Module, rgb: np.ndarray) -> np.ndarray:
    """The module's ``(H, W)`` person probability: the softmax of its two logits ``[0, z]``."""
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        return torch.softmax(model(x), dim=1)[0, 1].numpy()


@pytest.mark.parametrize("name", PHOTOS)
def test_converted_model_equals_the_tflite_runtime(converted: SelfieSegmenter, tflite_path: Path, name: str) -> None:
    """On real photos at 256 × 256 the person probability equals ai-edge-litert's to <= 1e-3 (measured: <= 1e-4)."""
    interpreter = Interpreter(model_path=str(tflite_path), num_threads=1)
    interpreter.allocate_tensors()
    rgb = _photo(name)
    reference = _tflite_person(interpreter, rgb)
    ours = _torch_person(converted, rgb)
    assert ours.shape == reference.shape == (256, 256)
    assert float(np.abs(ours - reference).max()) <= TOLERANCE


def test_shipped_bundle_is_what_the_script_writes(script: ModuleType, tflite_path: Path, tmp_path: Path) -> None:
    """The conversion, run in-process, writes exactly the shipped float32 tensors, LICENSE and NOTICE; the card names the source."""
    out = script.write_bundle(tflite_path, tmp_path / "person")
    shipped_dir = models_dir() / "person"
    produced, shipped = load_file(str(out / WEIGHTS_FILE)), load_file(str(shipped_dir / WEIGHTS_FILE))
    assert produced.keys() == shipped.keys()
    for key, tensor in produced.items():
        assert tensor.dtype == shipped[key].dtype == torch.float32, key
        assert torch.equal(tensor, shipped[key]), key
    for name in ("LICENSE", "NOTICE"):
        assert (out / name).read_text() == (shipped_dir / name).read_text(), name
    assert "Apache License" in (shipped_dir / "LICENSE").read_text()
    source = read_card(shipped_dir / CARD_FILE).provenance["source"]
    digest = script.sha256(tflite_path)
    assert source == read_card(out / CARD_FILE).provenance["source"]
    assert source["sha256"] == digest and digest in (shipped_dir / "NOTICE").read_text()
    assert source["version"] in (ROOT / "package.json").read_text()


def test_astronaut_is_person_and_the_shuttle_and_flag_are_not() -> None:
    """skimage.data.astronaut analysed at full resolution (512 × 512): her torso is person, the shuttle (top right) and the flag are not."""
    analysis = Analyzer(load_bundle("person")).analyze_image(np.asarray(skimage.data.astronaut()), AnalysisRequest(samples=0, resolution="full"))
    person = analysis.prediction == 1
    assert person.shape == (512, 512)
    torso = person[128:448, 128:256].mean()
    shuttle = person[0:160, 352:512].mean()
    flag = person[0:200, 0:90].mean()
    assert torso >= 0.8, torso
    assert shuttle <= 0.05, shuttle
    assert flag <= 0.05, flag


def test_load_bundle_runs_with_inserted_mc_dropout() -> None:
    """The card's dropout (inserted after training, before the final transposed convolution) gives finite, non-zero MC maps."""
    bundle = load_bundle("person")
    card = bundle.card
    assert bundle.class_names == ["background", "person"]
    assert card.dropout.trained_with_dropout is False and card.dropout.sites == ["head"]
    assert card.default_tta == "flips"
    assert card.normalization.mean == (0.0, 0.0, 0.0) and card.normalization.std == (1.0, 1.0, 1.0)
    assert bundle.net.stride == SELFIE_STRIDE and bundle.net.first_stochastic_stage == "head"
    analysis = Analyzer(bundle).analyze_image(_photo("astronaut", 240), AnalysisRequest(samples=4, seed=3))
    assert analysis.dropout_added_at_inference
    assert analysis.prediction.shape == (240, 240)
    for name, values in analysis.maps.items():
        if name not in analysis.unavailable:
            assert np.isfinite(values).all(), name
    assert analysis.maps["variance"].max() > 0
    assert float(analysis.maps["mutual_information"].min()) >= 0


def test_two_class_logits_are_the_sigmoid() -> None:
    """Logits ``[0, z]``: their softmax is ``[1 - σ(z), σ(z)]``; any input whose sides are multiples of 16 gives logits of its size."""
    model = SelfieSegmenter().eval()
    x = torch.rand(2, 3, 144, 256)
    with torch.inference_mode():
        logits = model(x)
        z = model.segmentation_head[0](model.decoder(model.encoder(x)))
    assert logits.shape == (2, 2, 144, 256)
    assert torch.equal(logits[:, :1], torch.zeros_like(z))
    torch.testing.assert_close(torch.softmax(logits, 1)[:, 1:], torch.sigmoid(z))


def test_card_default_tta_is_validated() -> None:
    """``default_tta`` takes a TTA mode or null; cards without it (models/default) read as null."""
    raw = json.loads((models_dir() / "person" / CARD_FILE).read_text())
    assert validate_card({**raw, "default_tta": "flips+scales"}, "card").default_tta == "flips+scales"
    assert validate_card({**raw, "default_tta": None}, "card").default_tta is None
    with pytest.raises(BundleError, match="default_tta"):
        validate_card({**raw, "default_tta": "rotations"}, "card")
    assert read_card(models_dir() / "default" / CARD_FILE).default_tta is None


def test_importer_refuses_a_graph_it_does_not_know(script: ModuleType, tflite_path: Path) -> None:
    """The package's landscape model (144 × 256) pools with MEAN ops, which the module does not mirror: the importer says so."""
    landscape = tflite_path.with_name("selfie_segmentation_landscape.tflite")
    with pytest.raises(script.ConversionError, match=re.escape("ops the module does not implement: {'MEAN'")):
        script.convert(landscape)
