"""``GET /``: the browser page (Jinja2 template, plain JS and CSS)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.analysis import MAP_NAMES
from app.encode import MAP_DESCRIPTIONS
from app.render import MAP_COLOURMAPS, colour_lut
from app.uncertainty import map_ranges
from app.web.deps import ServiceDep, SettingsDep
from app.web.evaluate import error_legend
from app.web.service import AnalysisService
from app.web.settings import Settings

TEMPLATE = "index.html"
MAP_TITLES = {
    "confidence": "Softmax confidence",
    "entropy": "Predictive entropy",
    "expected_entropy": "Expected entropy",
    "mutual_information": "Mutual information",
    "variance": "MC-dropout variance",
}
PANEL_MAPS = ("confidence", "entropy", "variance", "mutual_information")
MAP_EXPLANATIONS = {
    "confidence": "Max softmax probability of the deterministic pass. Alone it misleads: networks are often confidently wrong, "
    "most of all on objects they never saw, so compare it with mutual information.",
    "entropy": "H[p̄] of the mean MC-sample probabilities: total uncertainty, high at boundaries and on ambiguous pixels.",
    "expected_entropy": "Mean of H[p_t] over the samples: the aleatoric (data) part of the entropy.",
    "variance": "Variance of the predicted class's probability across dropout samples: high where the samples disagree.",
    "mutual_information": "H[p̄] − mean H[p_t]: epistemic uncertainty (the model does not know), which flags novel objects.",
}


def colour_gradient(cmap: str, stops: int = 17) -> str:
    """A CSS ``linear-gradient`` drawing colour map ``cmap`` left (low) to right (high)."""
    lut = colour_lut(cmap)
    parts = []
    for k in range(stops):
        i = round(k * 255 / (stops - 1))
        r, g, b = (int(v) for v in lut[i])
        parts.append(f"rgb({r},{g},{b}) {100 * k / (stops - 1):.2f}%")
    return f"linear-gradient(to right, {', '.join(parts)})"


def page_context(service: AnalysisService, settings: Settings) -> dict[str, Any]:
    """Everything the template and the page's script need."""
    card = service.bundle.card
    ranges = map_ranges(len(card.classes))
    maps = [
        {
            "name": name,
            "title": MAP_TITLES[name],
            "explanation": MAP_EXPLANATIONS[name],
            "description": MAP_DESCRIPTIONS[name],
            "range": list(ranges[name]),
            "colourmap": MAP_COLOURMAPS[name],
            "gradient": colour_gradient(MAP_COLOURMAPS[name]),
            "panel": name in PANEL_MAPS,
        }
        for name in MAP_NAMES
    ]
    panel_maps = [next(m for m in maps if m["name"] == name) for name in PANEL_MAPS]
    classes = [{"index": i, "name": c.name, "colour": c.colour} for i, c in enumerate(card.classes)]
    config = {
        "model": card.name,
        "classes": classes,
        "maps": [{k: m[k] for k in ("name", "title", "range", "description")} for m in maps],
        "panels": ["input", "prediction", *PANEL_MAPS],
        "defaultSamples": settings.default_samples,
        "maxSamples": settings.max_samples,
        "maxBodyBytes": settings.max_body_bytes,
        "temperature": card.temperature,
        "endpoints": {"analyze": "/api/v1/analyze", "evaluate": "/api/v1/evaluate", "models": "/api/v1/models"},
    }
    return {
        "model_name": card.name,
        "classes": classes,
        "maps": maps,
        "panel_maps": panel_maps,
        "error_legend": error_legend(),
        "temperature": card.temperature,
        "calibrated_available": card.temperature != 1.0,
        "dropout": card.dropout.model_dump(mode="json"),
        "default_samples": settings.default_samples,
        "max_samples": settings.max_samples,
        "max_body_mib": round(settings.max_body_bytes / 2**20, 1),
        "device": str(service.device),
        "config": config,
    }


def build_router(templates: Jinja2Templates) -> APIRouter:
    """The page router, rendering with ``templates``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request, service: ServiceDep, settings: SettingsDep) -> HTMLResponse:
        return templates.TemplateResponse(request, TEMPLATE, page_context(service, settings))

    return router
