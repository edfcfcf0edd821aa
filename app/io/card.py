"""The model card (``model.json``): what a bundle's weights are, what its classes mean, where MC dropout sits.

Validation only; the card is completed from an smp ``config.json`` or defaults in :mod:`app.io.user_model`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file

from app.defaults import DEFAULT_SAMPLES, DEFAULT_TTA, TtaMode
from app.engine.dropout import DROPOUT_MODES
from app.plural import plural, word_for

__all__ = [
    "CARD_FILE",
    "BundleError",
    "ClassInfo",
    "ClassMaskLevel",
    "ConformalLevel",
    "ConformalSets",
    "DropoutConfig",
    "FeatureDensityInfo",
    "ImageReference",
    "ImageTest",
    "ImageTestComponent",
    "InputSpec",
    "ModelCard",
    "Normalization",
    "architecture_classes",
    "read_json",
    "read_safetensors",
    "validate_card",
]

CARD_FILE = "model.json"
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class BundleError(ValueError):
    """A bundle is missing, malformed or does not match its weights."""


class ClassInfo(BaseModel):
    """One output class."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, description="Class name.")
    colour: str = Field(description="Display colour as #rrggbb.")

    @field_validator("colour")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not _COLOUR.match(value):
            raise ValueError(f"colour must look like #rrggbb, got {value!r}")
        return value.lower()


class Normalization(BaseModel):
    """Input normalisation: ``(pixel / 255 - mean) / std`` per RGB channel."""

    model_config = ConfigDict(extra="forbid")
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @field_validator("std")
    @classmethod
    def _positive(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError("every std must be > 0")
        return value


INSERTED_DROPOUT_NOTE = "inserted after training: a heuristic, not a posterior"
TRAINED_DROPOUT_NOTE = "the model was trained with this dropout"


def dropout_note(trained_with_dropout: bool) -> str:
    """What a model's MC dropout is, in words (the page, the API and the docs say the same): trained with, or inserted after training."""
    return TRAINED_DROPOUT_NOTE if trained_with_dropout else INSERTED_DROPOUT_NOTE


class DropoutConfig(BaseModel):
    """Where MC dropout sits, its rate, and whether the model was trained with it."""

    model_config = ConfigDict(extra="forbid")
    sites: list[str] = Field(default_factory=lambda: ["head"], description="'head' or dotted submodule paths.")
    rate: float = Field(0.2, ge=0.0, lt=1.0)
    mode: str = "channel"
    trained_with_dropout: bool = Field(True, description="False: dropout is inserted after training (at inference only): a heuristic, not a posterior.")

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in DROPOUT_MODES:
            raise ValueError(f"mode must be one of {DROPOUT_MODES}")
        return value


class InputSpec(BaseModel):
    """The scale the model works at."""

    model_config = ConfigDict(extra="forbid")
    working_size: int | None = Field(
        None, ge=16, description="Long side in pixels that inputs are resized to before analysis (None: analyse at full resolution)."
    )


class ImageReference(BaseModel):
    """Image-level reference for out-of-distribution verdicts: per map, the sorted image means on a validation split."""

    model_config = ConfigDict(extra="forbid")
    split: str = Field(description="What the reference images are.")
    images: int = Field(ge=1)
    samples: int = Field(ge=0, description="MC samples used for the reference analyses.")
    means: dict[str, list[float]] = Field(description="Map name → sorted image means.")

    @field_validator("means")
    @classmethod
    def _sorted(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        return {name: sorted(values) for name, values in value.items()}


class ImageTestComponent(BaseModel):
    """One standardised component of the combined image score (:mod:`app.metrics.conformal`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="A detection map (its image mean, oriented so larger is more uncertain) or 'feature_typicality'.")
    centre: float = Field(description="Median over the fit images.")
    scale: float = Field(gt=0.0, description="Upper spread (q90 - q50) / 1.2816 over the fit images.")


class ImageTest(BaseModel):
    """The image-level conformal test: a combined score fitted on one split, the sorted scores of another (calibration) split.

    An analysis's p-value is ``(1 + #{scores >= its score}) / (n + 1)``; it is called unusual at ``p <= alpha``, a false
    alarm on at most ``alpha`` of images like the calibration images.
    """

    model_config = ConfigDict(extra="forbid")
    method: str = Field(description="How the score is made, in words.")
    alpha: float = Field(0.01, gt=0.0, lt=1.0, description="False-alarm rate: unusual at p <= alpha.")
    components: list[ImageTestComponent] = Field(min_length=1)
    fitted_on: str = Field(description="The images the components' centres and scales were fitted on.")
    fit_images: int = Field(ge=2)
    calibrated_on: str = Field(description="The calibration images, disjoint from every fit.")
    samples: int = Field(ge=0, description="MC samples of the fit and calibration analyses (no test-time augmentation).")
    seed: int | None = Field(
        None, description="The one dropout seed every calibration image was analysed with (None: per-image seeds); analyses with another seed are approximate."
    )
    scores: list[float] = Field(min_length=1, description="The calibration images' scores, sorted.")
    command: str | None = Field(None, description="The command that fitted it.")

    @field_validator("scores")
    @classmethod
    def _sorted_scores(cls, value: list[float]) -> list[float]:
        return sorted(value)


class ConformalLevel(BaseModel):
    """One calibrated level of the per-pixel prediction sets (:mod:`app.metrics.risk_control`)."""

    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(gt=0.0, lt=1.0, description="Bound on the expected share of a new image's pixels whose true class is outside their set.")
    threshold: float = Field(ge=0.0, le=1.0, description="t: each pixel's set is every class whose probability reaches it (possibly none).")
    calibration_risk: float = Field(ge=0.0, le=1.0, description="The mean share of miscovered pixels on the calibration images at this threshold.")


class ClassMaskLevel(BaseModel):
    """A calibrated class mask: pixels whose probability of the class reaches ``threshold`` (false-negative-rate control)."""

    model_config = ConfigDict(extra="forbid")
    class_name: str
    alpha: float = Field(gt=0.0, lt=1.0, description="Bound on the expected share of the class's true pixels outside the mask, of an image showing it.")
    threshold: float = Field(ge=0.0, le=1.0)
    images: int = Field(ge=0, description="Calibration images that contain the class.")
    calibration_fnr: float = Field(ge=0.0, le=1.0, description="The mean false-negative rate on those images at this threshold.")


class ConformalSets(BaseModel):
    """Conformal risk control fitted by ``seg-uncertainty calibrate`` (:mod:`app.metrics.risk_control`): per-pixel prediction
    sets and class masks with a guaranteed expected miscoverage over images exchangeable with the calibration images."""

    model_config = ConfigDict(extra="forbid")
    method: str = Field(description="What was calibrated, in words.")
    score: str = Field(description="The probabilities the sets are made of: the analysis method's mean probabilities.")
    analysis_method: str = Field(description="The analysis method calibrated (e.g. mc_dropout); others are approximate.")
    samples: int = Field(ge=0)
    calibrated_on: str
    images: int = Field(ge=1)
    levels: list[ConformalLevel] = Field(min_length=1)
    class_masks: list[ClassMaskLevel] = Field(default_factory=list)
    command: str | None = None


class FeatureDensityInfo(BaseModel):
    """A fitted feature density (:mod:`app.maps.density`): its file beside the weights, how it was fitted, its image reference."""

    model_config = ConfigDict(extra="forbid")
    file: str = Field("density.safetensors", pattern=r"^[A-Za-z0-9_.-]+\.safetensors$", description="safetensors file in the bundle folder.")
    features: str = Field(description="Which features are scored.")
    channels: int = Field(ge=1, description="Feature channels K.")
    classes: list[str] = Field(min_length=1, description="Classes with a Gaussian (classes too rare in the fit have none).")
    conditioning: str = Field(description="Which label each fit pixel's features count towards.")
    covariance: str = Field(description="How the covariance is shared and regularised.")
    fitted_on: dict[str, Any] = Field(default_factory=dict, description="The images, pixels and seed of the fit.")
    image_statistics: list[tuple[float, float]] = Field(
        min_length=3, description="(mean, standard deviation) of the feature-distance map over each fit image: the image-level reference."
    )
    command: str | None = Field(None, description="The command that fitted it.")


def architecture_classes(architecture: dict[str, Any]) -> int:
    """The number of output classes an architecture declares (``classes``, or torchvision's ``num_classes``)."""
    return int(architecture.get("classes", architecture.get("num_classes", 1)))


class ModelCard(BaseModel):
    """The contents of ``model.json``."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = Field(1, ge=1, le=1)
    name: str = Field(min_length=1)
    architecture: dict[str, Any] = Field(
        description="smp.create_model keyword arguments (arch, encoder_name, classes, ...) or a torchvision builder "
        "(arch: torchvision.models.segmentation.<builder>, classes). Download keys (encoder_weights, weights, "
        "weights_backbone) are accepted and ignored: weights always come from the bundle."
    )
    classes: list[ClassInfo] = Field(min_length=2)
    normalization: Normalization = Field(default_factory=Normalization)
    dropout: DropoutConfig = Field(default_factory=DropoutConfig)
    input: InputSpec = Field(default_factory=InputSpec)
    domain: str = Field("", description="Plain-language description of the data the model was trained on.")
    temperature: float = Field(1.0, gt=0.0, description="Calibration temperature; 1.0 until calibrated.")
    default_samples: int | None = Field(
        None,
        ge=0,
        le=4096,
        description="MC samples an analysis uses when it does not say (None: app.defaults.DEFAULT_SAMPLES); a server's SEGU_DEFAULT_SAMPLES overrides it.",
    )
    default_tta: TtaMode | None = Field(
        None,
        description="Test-time augmentation the model's card recommends as its principled uncertainty method (e.g. 'flips' for a model "
        "trained without dropout), used by analyses that do not say (API form field `tta` omitted, CLI without --tta); None: no "
        "recommendation (app.defaults.DEFAULT_TTA applies).",
    )
    calibration: dict[str, Any] | None = None
    image_reference: ImageReference | None = None
    image_test: ImageTest | None = Field(None, description="The image-level conformal test (seg-uncertainty calibrate); None: images are not checked.")
    conformal_sets: ConformalSets | None = Field(
        None, description="Per-pixel prediction sets and class masks with conformal risk control (seg-uncertainty calibrate); None: not fitted."
    )
    feature_density: FeatureDensityInfo | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)

    @field_validator("architecture")
    @classmethod
    def _arch(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("arch"), str):
            raise ValueError("needs 'arch' (e.g. 'unet' or 'torchvision.models.segmentation.deeplabv3_mobilenet_v3_large')")
        return value

    def samples_default(self) -> int:
        """MC samples an analysis with this model uses when it does not say: :attr:`default_samples`, else ``DEFAULT_SAMPLES``."""
        return DEFAULT_SAMPLES if self.default_samples is None else self.default_samples

    def tta_default(self) -> TtaMode:
        """Test-time augmentation an analysis with this model uses when it does not say: :attr:`default_tta`, else ``DEFAULT_TTA``."""
        return DEFAULT_TTA if self.default_tta is None else self.default_tta

    @model_validator(mode="after")
    def _class_count(self) -> ModelCard:
        n = architecture_classes(self.architecture)
        if n != len(self.classes):
            listed = f"{plural(len(self.classes), 'class', 'classes')} {word_for(len(self.classes), 'is', 'are')} listed"
            raise ValueError(f"architecture.classes is {n} but {listed}")
        return self


def _format_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def read_json(path: Path) -> Any:
    """Parse a JSON file, as a :class:`BundleError` naming the file when it is absent or malformed."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"{path} not found") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file (never unpickled), as a :class:`BundleError` naming the file when it is absent or unreadable."""
    if not path.exists():
        raise BundleError(f"{path} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"{path} is not a readable safetensors file: {exc}") from exc


def validate_card(raw: object, where: Path | str) -> ModelCard:
    """Validate a card's JSON, naming ``where`` and the bad field on failure."""
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{where}: {_format_validation(exc)}") from exc
