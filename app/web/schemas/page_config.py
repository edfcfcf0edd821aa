"""The page's configuration, as Pydantic models: what the server embeds in the page (``<script id="segu-config">``).

Keys are camelCase in JSON (the page's script reads them so). The models are added to the OpenAPI document's
components (:class:`~app.web.docs.DocumentedApp`), so the page's TypeScript types are generated from them like the
API's answers (``static/js/api-types.d.ts``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.defaults import TtaMode

__all__ = ["PageClass", "PageConfig", "PageDropout", "PageEndpoints", "PageErrorLegendEntry", "PageMap", "PageModel", "PageScale", "PageTick"]


class _CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class PageClass(_CamelModel):
    """One output class of the model."""

    index: int = Field(description="Label value of the class in the prediction.")
    name: str = Field(description="Class name.")
    colour: str = Field(description="Display colour as #rrggbb.")


class PageMap(_CamelModel):
    """One uncertainty map the server computes."""

    name: str = Field(description="Machine name (confidence, entropy, ...).")
    title: str = Field(description="Human title shown on the page.")
    range: tuple[float, float] = Field(description="Fixed [low, high] of the map's colour scale.")
    description: str = Field(description="One-line definition of the map.")
    colourmap: str = Field(description="Name of its colour table (a key of colourTables).")
    display_power: float = Field(description="Exponent p of the scale: value v sits at ((v - low) / (high - low)) ** p of the colour table.")
    panel: bool = Field(description="Drawn as a panel (the answer then carries its quantised PNG).")
    uncertain_when: Literal["high", "low"] = Field(description="Whether a high or a low value means less trustworthy (ranking images: that end first).")


class PageErrorLegendEntry(_CamelModel):
    """One code of the error map (index 0 correct, 1 wrong, 2 not scored)."""

    name: str = Field(description="What the code means, as shown on the page.")
    colour: str = Field(description="Display colour as #rrggbb.")


class PageEndpoints(_CamelModel):
    """The API's URLs."""

    analyze: str = Field(description="POST an image: maps, prediction, regions.")
    evaluate: str = Field(description="POST an image and its mask: the analysis plus metrics.")
    models: str = Field(description="GET the loaded models.")


class PageTick(_CamelModel):
    """One labelled tick of a colour bar."""

    value: float = Field(description="The map value at the tick.")
    position: float = Field(description="Where it sits on the bar, 0 (left) to 1 (right).")
    label: str = Field(description="The value as printed.")


class PageScale(_CamelModel):
    """A map's colour bar for one model (its range depends on the model's class count)."""

    range: tuple[float, float] = Field(description="Fixed [low, high].")
    title: str = Field(description="The bar's tooltip: its spacing and range in words.")
    ticks: list[PageTick] = Field(description="Labelled ticks, left to right.")


class PageDropout(_CamelModel):
    """Where a model's MC dropout sits."""

    sites: list[str] = Field(description="'head' or dotted submodule paths.")
    rate: float = Field(description="Dropout probability.")
    trained_with_dropout: bool = Field(description="False: dropout is inserted after training (at inference only).")
    note: str = Field(description="What the dropout is, in words: 'inserted after training: a heuristic, not a posterior', or trained with.")


class PageModel(_CamelModel):
    """What the page shows of one served model (an entry of ``models``)."""

    name: str = Field(description="The name requests choose it by (form field `model`).")
    classes: list[PageClass] = Field(description="Its classes in label order.")
    domain: str = Field(description="What it was trained on, in words (may be empty).")
    working_size: int | None = Field(description='Long side inputs are resized to at resolution "working"; null: none.')
    temperature: float = Field(description="Its fitted temperature τ (1: never calibrated).")
    default_samples: int = Field(description="MC samples it uses when a request does not say.")
    default_tta: TtaMode = Field(description="Test-time augmentation it uses when a request does not say (its card's default_tta, else none).")
    unavailable: list[str] = Field(description="Maps it cannot compute (e.g. feature_distance without a fitted density); their panels show a note.")
    dropout: PageDropout = Field(description="Where its MC dropout sits.")
    scales: dict[str, PageScale] = Field(description="Each map's colour bar, by map name.")


class PageConfig(_CamelModel):
    """Everything the page's script needs from the server; the page opens on the default model."""

    model: str = Field(description="Name of the default model.")
    classes: list[PageClass] = Field(description="The default model's classes in label order.")
    domain: str = Field(description="What the default model was trained on, in words (may be empty).")
    working_size: int | None = Field(description='Long side inputs are resized to at resolution "working"; null: none.')
    maps: list[PageMap] = Field(description="Every map, in display order.")
    colour_tables: dict[str, str] = Field(description="Each colour table as 256 entries of rrggbb hex, position 0 first.")
    region_rows_shown: int = Field(description='Region rows shown before "show all".')
    image_suffixes: list[str] = Field(description="File endings taken from a chosen or dropped folder (lower case, with the dot); other files are skipped.")
    panels: list[str] = Field(description="The panels drawn (input, prediction, then the panel maps).")
    detection_maps: list[str] = Field(description="Maps scored for error and OOD detection, in display order.")
    error_legend: list[PageErrorLegendEntry] = Field(description="Meaning and colour of each error-map code, indexed by the code.")
    set_legend: list[PageErrorLegendEntry] = Field(
        description="Meaning and colour of the prediction-set panel's sizes 0, 1, 2 and 3 or more (the last for every larger size)."
    )
    default_samples: int = Field(description="MC samples the default model uses when the field does not hold a number.")
    max_samples: int = Field(description="Largest number of MC samples a request may ask for.")
    default_model: str = Field(description="Name of the default model (the first served).")
    models: list[PageModel] = Field(description="Every served model, the default first.")
    default_seed: int = Field(description="Seed used when the field does not hold a number.")
    default_ignore_index: int = Field(description="Mask value not scored when the field does not hold a number.")
    ece_bins: int = Field(description="Number of equal-width confidence bins of the ECE and the reliability diagram.")
    max_body_bytes: int = Field(description="Largest accepted request body in bytes.")
    temperature: float = Field(description="The default model's fitted temperature τ (1: never calibrated).")
    endpoints: PageEndpoints = Field(description="The URLs the page calls.")
    pixel_debounce_ms: int = Field(description="Wait after the cursor stops before exact values are fetched, in milliseconds.")
    rerun_debounce_ms: int = Field(description="Wait after a control changes before the selected image is analysed again, in milliseconds.")
    api_key_required: bool = Field(description="The server requires an API key on the API (the page then shows a field for it).")
    noise_z: float = Field(description="Two map means differ beyond Monte-Carlo noise when |a − b| > noiseZ · sqrt(se_a² + se_b²).")
