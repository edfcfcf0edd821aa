"""Pydantic models of every JSON the API sends (they also document ``/docs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.defaults import TtaMode
from app.maps.registry import MAP_NAMES
from app.web.api_paths import ANALYSES_PATH
from app.web.schemas.adversarial import AdversarialOut
from app.web.schemas.base import ApiModel
from app.web.settings import env_name


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(
        description="Stable machine-readable code, e.g. unsupported_media_type, corrupt_image, too_many_pixels, body_too_large, validation_error; "
        "for masks: corrupt_mask, mask_not_single_channel, mask_size_mismatch."
    )
    message: str = Field(description="What went wrong and how to fix it, in words.")
    field: str | None = Field(default=None, description="The request field at fault, when there is one.")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail = Field(description="The error.")


class RawArray(ApiModel):
    """A numeric array as base64 of its raw little-endian bytes, in C (row-major) order."""

    dtype: Literal["float32", "float16", "uint8"] = Field(description="Element type.")
    shape: list[int] = Field(description="Array shape, e.g. [H, W] for a map or [C, H, W] for class probabilities.")
    byte_order: Literal["little"] = Field(default="little", description="Byte order of multi-byte elements.")
    data: str = Field(description="Base64 (RFC 4648, with padding) of the raw bytes.")


class ClassOut(ApiModel):
    """One output class of the model."""

    index: int = Field(description="Label value of the class in the prediction.")
    name: str = Field(description="Class name.")
    colour: str = Field(description="Display colour as #rrggbb.")


class MapOut(ApiModel):
    """One per-pixel uncertainty map."""

    name: str = Field(description=f"The map: {', '.join(MAP_NAMES)} (every map of the registry, in this order).")
    description: str = Field(description="One-line definition of the map.")
    range: tuple[float, float] = Field(description="Fixed [low, high] of the colour scale (never the image's min-max).")
    display_power: float = Field(
        description="Fixed exponent p of the colour scale: a value v sits at position ((v - low) / (high - low)) ** p of the colour map (1: linear)."
    )
    mean: float = Field(description="Mean of the map over the image.")
    mean_error: float | None = Field(
        description="Monte-Carlo standard error of `mean` (see error_method): 0 for maps of the deterministic pass, null when not estimable (samples=1)."
    )
    colourmap: str = Field(description="Name of the colour scale (viridis or inferno).")
    quantised: str | None = Field(
        default=None,
        description="The map's position on its colour scale, q = round(255 * ((v - low) / (high - low)) ** p), as an 8-bit greyscale "
        "data:image/png;base64 URL: q indexes the 256-entry colour table, and low + (high - low) * (q / 255) ** (1 / p) approximates v. "
        "Sent for the maps the page draws as panels; null for the others.",
    )
    url: str | None = Field(default=None, description="GET URL of the map as a colour PNG on its fixed scale; null when the analysis was not kept.")
    png: str | None = Field(default=None, description="The map on its fixed colour scale as a data:image/png;base64 URL; only with raw=true.")
    values: RawArray | None = Field(default=None, description="Raw (H, W) values; only with raw=true.")


class PredictionOut(ApiModel):
    """The predicted label map."""

    description: str = Field(description="How the prediction is made.")
    labels_png: str | None = Field(
        default=None, description="The class indices as an 8-bit greyscale data:image/png;base64 URL; null when the model has more than 256 classes."
    )
    url: str | None = Field(default=None, description="GET URL of the labels in class colours as a PNG; null when the analysis was not kept.")
    png: str | None = Field(default=None, description="The labels in class colours as a data:image/png;base64 URL; only with raw=true.")
    labels: RawArray | None = Field(default=None, description="Raw (H, W) uint8 class indices; only with raw=true (and at most 256 classes).")


class Timings(ApiModel):
    """Seconds spent in each step of the request."""

    decode: float = Field(description="Decoding the upload to RGB.")
    inference: float = Field(description="Deterministic pass plus the MC-dropout samples.")
    regions: float = Field(description="Building the region table.")
    encode: float = Field(description="Keeping the analysis for downloads by id and encoding PNGs, JPEG and raw arrays.")
    total: float = Field(description="Everything after the upload was received.")


class RegionOut(ApiModel):
    """One row of the region table: a predicted class, or one connected component of it."""

    kind: Literal["class", "component"] = Field(description="class: all pixels of a class; component: one 8-connected blob.")
    class_index: int = Field(description="Class label value.")
    class_name: str = Field(description="Class name.")
    component: int | None = Field(default=None, description="1-based rank of the component within its class by area; null for class rows.")
    pixels: int = Field(description="Area in pixels.")
    share: float = Field(description="Area as a fraction of the image (6 significant digits).")
    bbox: list[int] = Field(description="Bounding box [x0, y0, x1, y1) in pixels.")
    means: dict[str, float] = Field(description="Mean of every map over the region's pixels (6 significant digits).")
    errors: dict[str, float | None] = Field(
        description="Monte-Carlo standard error of each mean (3 significant digits); null when not estimable (samples=1, or a tiled full-resolution analysis)."
    )
    sure_share: float | None = Field(
        default=None,
        description="Share of the region's pixels whose conformal prediction set holds one class at the default level (conformal.default_alpha); "
        "null when the model has no calibrated sets.",
    )


class SetLevelOut(ApiModel):
    """The prediction sets at one calibrated level."""

    alpha: float = Field(description="The level: the expected share of an image's pixels whose true class is outside their set is at most alpha.")
    threshold: float = Field(description="t: a pixel's set is every class whose MC-mean probability reaches it.")
    set_size_png: str = Field(
        description="8-bit greyscale PNG of each pixel's set size (0 = no class reaches the level; 1 = one class; more = ambiguous), as a data URL."
    )
    singleton_share: float = Field(description="Share of the image's pixels whose set holds one class.")
    mean_set_size: float = Field(description="Mean set size over the image.")


class ClassMaskOut(ApiModel):
    """A calibrated class mask: the pixels whose probability of the class reaches threshold."""

    class_name: str = Field(description="The class.")
    alpha: float = Field(description="For an image showing the class, the expected share of its true pixels outside the mask is at most alpha.")
    threshold: float = Field(description="The probability a pixel needs to be in the mask.")
    share: float = Field(description="Share of this image's pixels in the mask.")
    url: str | None = Field(default=None, description="GET URL of the mask as a PNG (white inside); null when the analysis was not kept.")


class ConformalOut(ApiModel):
    """Conformal prediction sets and class masks, with the guarantee they carry (null when the model has none calibrated)."""

    levels: list[SetLevelOut] = Field(description="One per calibrated level.")
    default_alpha: float = Field(description="The level shown first.")
    guarantee: str = Field(description="What is guaranteed, over what, and what it assumes.")
    approximate: str = Field(description="Why this analysis is not the method the model calibrated (its guarantee is then approximate); empty when it is.")
    class_masks: list[ClassMaskOut] = Field(description="Each class's calibrated mask at each level.")


class ImageOodOut(ApiModel):
    """One map's image-level out-of-distribution verdict against the model's validation images."""

    map: str = Field(description="The map.")
    image_mean: float = Field(description="The map's mean over this image.")
    percentile: float = Field(description="Percent of validation images less uncertain by this map than this image (ties count half).")
    unusual: bool = Field(description="True when this map alone puts the image at or above its 99th percentile (a detail: the verdict is image_check).")
    message: str = Field(description="The percentile in words.")


class ImageCheckOut(ApiModel):
    """The one image-level verdict: a conformal test of a combined score against reference images, or why there is none."""

    status: Literal["unusual", "not_flagged", "not_checked"] = Field(
        description="unusual: p <= alpha; not_flagged: the test ran and did not reject (this does not show the image is like the "
        "training data); not_checked: no reference for this model or setting (test-time augmentation, an ensemble, an uncalibrated model)."
    )
    message: str = Field(description="The verdict in words: what was checked, against what, and what the model knows (its card's domain).")
    reason: str = Field(description="Why the image was not checked, or which standardised component drove the score.")
    reference: str | None = Field(description="The reference images the score was compared with; null when not checked.")
    p_value: float | None = Field(description="Conformal p-value (1 + #{reference scores >= score}) / (n + 1); null when not checked.")
    alpha: float | None = Field(description="False-alarm rate of the test: unusual at p <= alpha; null when not checked.")
    score: float | None = Field(description="The combined score: the largest standardised component; null when not checked.")
    components: dict[str, float] | None = Field(description="Each component's standardised value; null when not checked.")


class AnalyzeResponse(ApiModel):
    """The result of one analysis."""

    analysis_id: str | None = Field(
        description=f"Id of this analysis on the server: GET {ANALYSES_PATH}/{{id}}/maps/{{name}}.png, /maps.npz and /pixel?x=&y= serve it "
        "without re-running until it expires (see expires_in); null when it was too large to keep."
    )
    expires_in: float = Field(description="Seconds the id stays valid after its last use.")
    npz_url: str | None = Field(default=None, description="GET URL of the raw arrays as .npz; null when the analysis was not kept.")
    pixel_url: str | None = Field(default=None, description="GET URL (add ?x=&y=) of the exact values at one pixel; null when the analysis was not kept.")
    model: str = Field(description="Name of the model bundle.")
    classes: list[ClassOut] = Field(description="The model's classes in label order.")
    width: int = Field(description="Width of the maps in pixels: the analysed size, or its previews' (preview_factor > 1).")
    height: int = Field(description="Height of the maps in pixels: the analysed size, or its previews' (preview_factor > 1).")
    preview_factor: int = Field(
        default=1,
        description="1: the maps, labels and image of this answer are at the analysed size. f > 1: the analysis was streamed to a chunked "
        "store on the server (resolution=full beyond the server's stream_pixels): they are its previews, f times smaller in each axis "
        "(block means; the labels' most frequent class per block), as are the map PNGs by id, while the means, the region table (its "
        "class rows), the NPZ and the pixel endpoint (x, y in the analysed image, analysed_size) read every analysed pixel.",
    )
    input_width: int = Field(description="Width of the decoded input in pixels.")
    input_height: int = Field(description="Height of the decoded input in pixels.")
    analysed_size: tuple[int, int] = Field(description="[width, height] the model analysed: the input resized to the working size, or the input itself.")
    resolution: str = Field(description="working: resized to the model's working size; full: every input pixel.")
    image_ood: list[ImageOodOut] = Field(
        description="Per map, where the image's mean falls among the model's validation images (details behind image_check); empty when "
        "the model has no reference or test-time augmentation is used."
    )
    image_check: ImageCheckOut = Field(description="The image-level verdict, present for every analysis: unusual, not flagged or not checked.")
    samples: int = Field(description="MC-dropout samples drawn per pass (0: each pass's deterministic pass only).")
    method: str = Field(
        description="What the statistics pool: deterministic, mc_dropout, tta:<mode>, ensemble(<members>), or a combination joined by ' + ' "
        "(e.g. 'ensemble(3) + tta:flips + mc_dropout')."
    )
    tta: str = Field(description="Test-time augmentation: none, flips, flips+scales or photometric.")
    passes: int = Field(description="Passes run: ensemble members × augmentations; the maps pool passes × max(samples, 1) probability samples.")
    error_method: str = Field(
        description="How the maps' MC standard errors were found: jackknife (leave-one-group-out over 10 groups of samples; conservative with "
        "the default stratified masks), tile_bound (tiled full-resolution analysis: the largest tile's error, an upper bound; no region errors), "
        "exact (nothing is random: samples=0 without photometric jitter) or unavailable (samples=1). With several passes the groups are MC "
        "sample ids left out of every pass (dropout noise); photometric jitter with samples=0 leaves one pass out at a time."
    )
    estimator: str = Field(
        default="sampled",
        description="How the sampled maps (entropy, expected entropy, mutual information, variance) were estimated: sampled (plug-in "
        "statistics of the MC samples, the textbook estimator) or rao_blackwellised (the default where the model allows: channel dropout "
        "before a linear head; samples / 2^enumerated_channels draws, in each of which each pixel's enumerated_channels widest head "
        "channels are summed over exactly, with their probabilities; draws are independent for every block of pixels, so the image "
        "and region means average their errors out; the entropy of the mean and the variance are bias-corrected by the delete-a-group "
        "jackknife, and mean_error is that jackknife's error widened to a t-interval of 95 % at ±1.96 errors).",
    )
    enumerated_channels: int = Field(default=0, description="k of the rao_blackwellised estimator: 2^k exact branches per draw (0 for sampled).")
    effort: int = Field(default=0, description="Softmax evaluations per pixel and pass: samples (rao_blackwellised: its draws × 2^enumerated_channels).")
    unavailable: list[str] = Field(
        default_factory=list,
        description="Maps this model cannot compute (they are all zeros): feature_distance when the bundle has no fitted feature density.",
    )
    seed: int = Field(description="Seed of the dropout masks; the same seed on the same device gives the same maps.")
    device: str = Field(description="Where the model ran (cpu, cuda:0, ...).")
    calibrated: bool = Field(description="Whether the bundle's calibration temperature was applied.")
    temperature: float = Field(description="Temperature τ used in softmax(z / τ); 1.0 when not calibrated.")
    model_temperature: float = Field(description="The bundle's fitted temperature (1.0 if it was never calibrated).")
    dropout_added_at_inference: bool = Field(
        description="True if the model was trained without dropout and MC dropout was inserted after training, for inference only: "
        "a heuristic, not a posterior (see dropout_note)."
    )
    dropout_note: str = Field(
        description="The model's MC dropout in words: 'inserted after training: a heuristic, not a posterior', or 'the model was trained with this dropout'."
    )
    timings: Timings = Field(description="Seconds per step.")
    image: str = Field(description="The decoded input (EXIF orientation applied) at the analysed size, as a data:image/jpeg;base64 URL.")
    prediction: PredictionOut = Field(description="The predicted labels: greyscale PNG of class indices, and with raw=true a colour PNG and the raw label map.")
    maps: list[MapOut] = Field(description="The uncertainty maps.")
    mean_probs: RawArray | None = Field(
        default=None, description="Raw (C, H, W) MC-mean class probabilities; only with raw=true (the pixel endpoint gives them per pixel)."
    )
    class_shares: dict[str, float] = Field(description="Fraction of pixels predicted as each class.")
    regions: list[RegionOut] = Field(description="Region table: class rows first, then components largest first.")
    conformal: ConformalOut | None = Field(
        default=None, description="Conformal prediction sets at the model's calibrated levels (seg-uncertainty calibrate fits them); null without."
    )
    adversarial: AdversarialOut | None = Field(
        default=None,
        description="Adversarial sensitivity (with adversarial=true): per radius the share of pixels an L∞ attack flips, the flip-ε map, "
        "the perturbed images and their predictions; null when not asked for.",
    )


class ClassProbability(ApiModel):
    """One class at one pixel."""

    index: int = Field(description="Class label value.")
    name: str = Field(description="Class name.")
    probability: float = Field(description="Its MC-mean probability at the pixel.")


class PixelResponse(ApiModel):
    """Exact values of one pixel of a kept analysis."""

    analysis_id: str = Field(description="The analysis.")
    x: int = Field(description="Column in the analysed image (0 is the left edge).")
    y: int = Field(description="Row in the analysed image (0 is the top edge).")
    values: dict[str, float] = Field(description="Every map's exact value at the pixel.")
    prediction: ClassProbability = Field(description="The predicted class (argmax of the MC-mean probabilities).")
    top: list[ClassProbability] = Field(description="The most probable classes (up to 3), most probable first.")
    error: str | None = Field(
        default=None, description="When the analysis was scored against a mask: correct, wrong or not scored at this pixel; null otherwise."
    )
    sets: dict[str, list[int]] | None = Field(
        default=None,
        description="Per calibrated level (alpha as text, e.g. '0.1'), the classes in the pixel's conformal prediction set, most probable "
        "first; null when the model has no calibrated sets.",
    )


class ModelInfo(ApiModel):
    """A loaded model bundle's card."""

    name: str = Field(description="Bundle name.")
    classes: list[ClassOut] = Field(description="Classes in label order with display colours.")
    domain: str = Field(description="What the model was trained on, in words (empty when the card does not say).")
    working_size: int | None = Field(description="Long side in pixels inputs are resized to by default (resolution=working); null: none.")
    architecture: dict[str, Any] = Field(description="segmentation_models_pytorch create_model arguments.")
    normalization: dict[str, Any] = Field(description="Input normalisation: (pixel / 255 - mean) / std per RGB channel.")
    dropout: dict[str, Any] = Field(
        description="MC-dropout sites, rate, mode and whether the model was trained with it (trained_with_dropout false: inserted after "
        "training, a heuristic, not a posterior)."
    )
    dropout_note: str = Field(
        description="Its MC dropout in words: 'inserted after training: a heuristic, not a posterior', or 'the model was trained with this dropout'."
    )
    temperature: float = Field(description="Calibration temperature τ (1.0 until calibrated).")
    calibration: dict[str, Any] | None = Field(default=None, description="Calibration metrics measured when τ was fitted, if any.")
    provenance: dict[str, Any] = Field(description="Training provenance and measured metrics.")
    device: str = Field(description="Where the model runs.")
    default: bool = Field(description="The model used when a request names none (the first served).")
    default_samples: int = Field(description=f"MC samples this model uses when a request does not say: {env_name('default_samples')} if set, else its card's.")
    default_tta: TtaMode = Field(
        description="Test-time augmentation this model uses when a request does not say (form field `tta`): its card's default_tta, else none."
    )
    feature_density: bool = Field(
        description="The bundle has a fitted feature density (seg-uncertainty fit-density), so its analyses compute the feature_distance map; "
        "false: that map is all zeros (described as not available) and the page shows no panel for it."
    )
    ready: bool = Field(description="Warmed up and taking requests.")


class ModelsResponse(ApiModel):
    """The models this server holds."""

    default: str = Field(description="Name of the model used when a request names none (the form field `model` of analyze and evaluate).")
    models: list[ModelInfo] = Field(description="The served models, the default first.")
    default_samples: int = Field(description="MC samples the default model uses when a request does not say (each model's: models[].default_samples).")
    max_samples: int = Field(description="Largest number of MC samples a request may ask for.")
    max_body_bytes: int = Field(description="Largest accepted request body in bytes.")
    max_pixels: int = Field(description="Largest accepted width x height.")


class HealthResponse(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "ready"] = Field(description="ok: the process is up; ready: every model is loaded and warmed up.")
    model: str | None = Field(default=None, description="The default model, once ready.")
    device: str | None = Field(default=None, description="Where the models run, once ready.")
    models: list[str] | None = Field(default=None, description="Every served model, the default first, once ready.")
