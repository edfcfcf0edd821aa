"""The answer's ``adversarial`` block: what an untargeted L∞ attack on the image's deterministic prediction changed."""

from __future__ import annotations

from pydantic import Field

from app.web.schemas.base import ApiModel

__all__ = ["AdversarialLevelOut", "AdversarialOut"]


class AdversarialLevelOut(ApiModel):
    """The attack at one radius ε."""

    epsilon: float = Field(description="The L∞ radius in pixel levels of [0, 255] (2 means 2/255).")
    epsilon_text: str = Field(description="The radius as a fraction of the range, e.g. '2/255'.")
    flip_share: float = Field(
        description="Share of pixels whose deterministic class the attack's perturbed image changes (the one image the attack kept at "
        "this radius, unrounded): 'fooled at ε = 2/255: 31 % of pixels'. Never falls as ε grows."
    )
    flippable_share: float = Field(
        description="Share of pixels with flip_epsilon ≤ ε: flipped by some step of the attack within this radius (not necessarily all "
        "by the same image); at least flip_share."
    )
    rounded_flip_share: float = Field(description="Share of pixels whose class `image` (the perturbed image rounded to 8 bits) changes.")
    image: str = Field(description="The perturbed image, rounded to 8 bits, as a lossless data:image/png;base64 URL at the analysed size.")
    labels_png: str | None = Field(
        default=None,
        description="The deterministic prediction of `image` as an 8-bit greyscale PNG of class indices (data URL); null beyond 256 classes.",
    )


class AdversarialOut(ApiModel):
    """Adversarial sensitivity: how little it takes to change the prediction (asked with adversarial=true)."""

    description: str = Field(description="What was attacked and how, in words.")
    epsilons: list[float] = Field(description="The radii, ascending, in pixel levels of [0, 255].")
    steps: int = Field(description="PGD steps after the FGSM step at each radius.")
    seed: int = Field(description="Seed of the attack's random start (the request's seed).")
    passes: int = Field(description="Forward passes the attack ran (len(epsilons) × (steps + 1) of them with a backward pass).")
    seconds: float = Field(description="Time the attack took.")
    flip_epsilon_png: str = Field(
        description="The flip-ε map as an 8-bit greyscale PNG data URL: value k (0-based) means the smallest radius that flipped the "
        "pixel is epsilons[k]; 255 means no radius did (∞)."
    )
    clean_labels_png: str | None = Field(
        default=None,
        description="The deterministic prediction of the clean image the flips are counted against (8-bit greyscale class indices; it "
        "can differ from `prediction`, the MC mean's); null beyond 256 classes.",
    )
    never_flipped_share: float = Field(description="Share of pixels no radius flipped.")
    levels: list[AdversarialLevelOut] = Field(description="Per radius, ascending: shares, the perturbed image and its prediction.")
