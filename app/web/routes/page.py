"""``GET /``: the browser page (Jinja2 template, plain JS and CSS)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.defaults import DEFAULT_SEED, ECE_BINS, IGNORE_INDEX, IMAGE_SUFFIXES, MAX_LABEL, NOISE_Z, PIXEL_DEBOUNCE_MS, REGION_ROWS_SHOWN, RERUN_DEBOUNCE_MS
from app.io.card import dropout_note
from app.io.rendering import colour_lut, error_legend, set_legend
from app.io.resources import templates_dir
from app.maps.registry import DETECTION_MAPS, MAPS, PANEL_MAPS, MapSpec
from app.web.api_paths import API_PREFIX
from app.web.deps import ServicesDep, SettingsDep
from app.web.examples import served_examples
from app.web.scales import colour_table_hex, ticks
from app.web.schemas.page_config import PageClass, PageConfig, PageDropout, PageEndpoints, PageErrorLegendEntry, PageMap, PageModel, PageScale, PageTick
from app.web.service import AnalysisService
from app.web.services import ModelServices
from app.web.settings import Settings

TEMPLATE = "index.html"


def unavailable_note(spec: MapSpec) -> tuple[str, str]:
    """The note in a map's panel for a model that cannot compute it: what is missing, and the command that provides it."""
    if spec.needs is None:
        return "This model cannot compute this map.", ""
    return f"This model has no {spec.needs}, so it has no {spec.name.replace('_', '-')} map: see", spec.needs_command or ""


def colour_gradient(cmap: str, stops: int = 17) -> str:
    """A CSS ``linear-gradient`` drawing colour map ``cmap`` left (low) to right (high)."""
    lut = colour_lut(cmap)
    parts = []
    for k in range(stops):
        i = round(k * 255 / (stops - 1))
        r, g, b = (int(v) for v in lut[i])
        parts.append(f"rgb({r},{g},{b}) {100 * k / (stops - 1):.2f}%")
    return f"linear-gradient(to right, {', '.join(parts)})"


def scale_note(spec: MapSpec) -> str:
    """How a map's colour bar is spaced, in words."""
    power = spec.display_power
    if power == 1.0:
        return "linear scale"
    if abs(power - 0.5) < 1e-9:
        return "square-root scale"
    if abs(power - 1 / 3) < 1e-9:
        return "cube-root scale"
    return f"power scale (exponent {power:g})"


def model_config(service: AnalysisService) -> PageModel:
    """What the page shows of one served model (the script's ``config.models`` entry): its facts, classes, default MC samples,
    the maps it cannot compute (their panels show a note instead) and the colour-bar ticks of every map, whose ranges depend
    on its class count."""
    card = service.bundle.card
    num_classes = len(card.classes)
    scales = {}
    for spec in MAPS:
        low, high = spec.range(num_classes)
        scales[spec.name] = PageScale(
            range=(low, high),
            title=f"fixed {scale_note(spec)} from {round(low, 3):g} to {round(high, 3):g}",
            ticks=[PageTick(value=t.value, position=t.position, label=t.label) for t in ticks(spec, num_classes)],
        )
    return PageModel(
        name=card.name,
        classes=[PageClass(index=i, name=c.name, colour=c.colour) for i, c in enumerate(card.classes)],
        domain=card.domain,
        working_size=card.input.working_size,
        temperature=card.temperature,
        default_samples=service.default_samples,
        default_tta=service.default_tta,
        unavailable=list(service.analyzer.unavailable),
        dropout=PageDropout(
            sites=list(card.dropout.sites),
            rate=card.dropout.rate,
            trained_with_dropout=card.dropout.trained_with_dropout,
            note=dropout_note(card.dropout.trained_with_dropout),
        ),
        scales=scales,
    )


def page_config(services: ModelServices, settings: Settings) -> PageConfig:
    """The page script's configuration: the default model's facts, every map and served model, the limits and the endpoints."""
    service = services.default
    card = service.bundle.card
    num_classes = len(card.classes)
    return PageConfig(
        model=card.name,
        classes=[PageClass(index=i, name=c.name, colour=c.colour) for i, c in enumerate(card.classes)],
        domain=card.domain,
        working_size=card.input.working_size,
        maps=[
            PageMap(
                name=spec.name,
                title=spec.title,
                range=spec.range(num_classes),
                description=spec.meaning,
                colourmap=spec.colourmap,
                display_power=spec.display_power,
                panel=spec.panel is not None,
                uncertain_when=spec.uncertain_when,
            )
            for spec in MAPS
        ],
        colour_tables={name: colour_table_hex(name) for name in sorted({spec.colourmap for spec in MAPS})},
        region_rows_shown=REGION_ROWS_SHOWN,
        image_suffixes=sorted(IMAGE_SUFFIXES),
        panels=["input", "prediction", *PANEL_MAPS],
        detection_maps=list(DETECTION_MAPS),
        error_legend=[PageErrorLegendEntry(**entry) for entry in error_legend()],
        set_legend=[PageErrorLegendEntry(**entry) for entry in set_legend()],
        default_samples=service.default_samples,
        max_samples=settings.max_samples,
        default_model=service.name,
        models=[model_config(each) for each in services.services.values()],
        default_seed=DEFAULT_SEED,
        default_ignore_index=IGNORE_INDEX,
        ece_bins=ECE_BINS,
        max_body_bytes=settings.max_body_bytes,
        temperature=card.temperature,
        endpoints=PageEndpoints(analyze=f"{API_PREFIX}/analyze", evaluate=f"{API_PREFIX}/evaluate", models=f"{API_PREFIX}/models"),
        pixel_debounce_ms=PIXEL_DEBOUNCE_MS,
        rerun_debounce_ms=RERUN_DEBOUNCE_MS,
        api_key_required=bool(settings.api_keys),
        noise_z=NOISE_Z,
    )


def page_context(services: ModelServices, settings: Settings) -> dict[str, Any]:
    """Everything the template and the page's script need; the script's constants come from ``config`` (:func:`page_config`,
    as JSON with the camelCase keys of :class:`~app.web.schemas.page_config.PageConfig`).

    The page opens on the default model; ``config.models`` describes every served model for the model selector.
    """
    service = services.default
    card = service.bundle.card
    num_classes = len(card.classes)
    maps = [
        {
            "name": spec.name,
            "title": spec.title,
            "explanation": spec.explanation,
            "description": spec.meaning,
            "range": list(spec.range(num_classes)),
            "colourmap": spec.colourmap,
            "displayPower": spec.display_power,
            "scaleNote": scale_note(spec),
            "ticks": [{"value": t.value, "position": t.position, "label": t.label} for t in ticks(spec, num_classes)],
            "gradient": colour_gradient(spec.colourmap),
            "panel": spec.panel is not None,
            "unavailableNote": unavailable_note(spec),
        }
        for spec in MAPS
    ]
    panel_maps = [next(m for m in maps if m["name"] == name) for name in PANEL_MAPS]
    classes = [{"index": i, "name": c.name, "colour": c.colour} for i, c in enumerate(card.classes)]
    config = page_config(services, settings).model_dump(mode="json", by_alias=True)
    return {
        "model_name": card.name,
        "domain": card.domain,
        "working_size": card.input.working_size,
        "classes": classes,
        "maps": maps,
        "panel_maps": panel_maps,
        "unavailable": list(service.analyzer.unavailable),
        "error_legend": error_legend(),
        "set_legend": set_legend(),
        "temperature": card.temperature,
        "calibrated_available": card.temperature != 1.0,
        "dropout": card.dropout.model_dump(mode="json"),
        "dropout_note": dropout_note(card.dropout.trained_with_dropout),
        "default_samples": service.default_samples,
        "default_tta": service.default_tta,
        "max_samples": settings.max_samples,
        "models": services.names,
        "examples": served_examples(services.names),
        "default_seed": DEFAULT_SEED,
        "default_ignore_index": IGNORE_INDEX,
        "ece_bins": ECE_BINS,
        "max_label": MAX_LABEL,
        "max_body_mib": round(settings.max_body_bytes / 2**20, 1),
        "device": str(service.device),
        "config": config,
    }


router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def templates() -> Jinja2Templates:
    """The page's templates (the installed copies, else the source tree's; :mod:`app.io.resources`), loaded once."""
    return Jinja2Templates(directory=str(templates_dir()))


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, services: ServicesDep, settings: SettingsDep) -> HTMLResponse:
    """The page, with its configuration embedded."""
    return templates().TemplateResponse(request, TEMPLATE, page_context(services, settings))
