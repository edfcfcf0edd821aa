"""MkDocs hook: the parts of the docs that are generated from the code, so they cannot drift from it.

A page holds a marker, an HTML comment on a line of its own; ``on_page_markdown`` replaces it before the page is
rendered:

``<!-- openapi -->``       the REST API, rendered from ``create_app(Settings()).openapi()``
``<!-- cli -->``           every command's ``--help``, from the argparse parsers in ``app/cli/``
``<!-- settings -->``      the configuration table, ``app.web.settings.settings_table_markdown()`` (from the ``Settings`` fields)
``<!-- error-codes -->``   the error table, ``app.web.errors.error_table_markdown()`` (from the ``ErrorCode`` enum)
``<!-- maps -->``          the map registry (``app.maps.registry.MAPS``)

Nothing here starts the server or loads a model: the app factory only builds the routes; models load in its lifespan.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _cell(text: object) -> str:
    """One Markdown table cell: a single line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _anchor(name: str) -> str:
    return "schema-" + "".join(ch if ch.isalnum() else "-" for ch in name.lower())


# ---------------------------------------------------------------- OpenAPI


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict[str, Any]) -> str:
    """A schema's type in a few words, with links to the component schemas it names."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{_anchor(name)})"
    if "anyOf" in schema:
        parts = [_type(s) for s in schema["anyOf"]]
        return " or ".join(dict.fromkeys(parts))
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _type(schema["allOf"][0])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " | ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        if "prefixItems" in schema:
            return "[" + ", ".join(_type(s) for s in schema["prefixItems"]) + "]"
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return f"object of {_type(schema['additionalProperties'])}"
    if kind == "string" and (schema.get("format") == "binary" or "contentMediaType" in schema):
        return "file"
    if kind == "null":
        return "null"
    if kind is None:
        return "any"
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt and fmt != "binary" else str(kind)


def _constraints(schema: dict[str, Any]) -> str:
    words = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in schema:
            words.append(f"{sign} {schema[key]:g}")
    for key, label in (("minLength", "min length"), ("maxLength", "max length"), ("pattern", "pattern")):
        if key in schema:
            words.append(f"{label} `{schema[key]}`")
    for option in schema.get("anyOf", []):
        extra = _constraints(option)
        if extra:
            words.append(extra)
    return ", ".join(words)


def _default(schema: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" in schema:
        return f"`{json.dumps(schema['default'])}`"
    return ""


def _flatten(schema: dict[str, Any], components: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """A schema's properties and required names, with those of the schemas it composes (``allOf``) first."""
    properties: dict[str, dict[str, Any]] = {}
    required: set[str] = set()
    for part in schema.get("allOf", []):
        target = components.get(_ref_name(part["$ref"]), {}) if "$ref" in part else part
        more, needed = _flatten(target, components)
        properties.update(more)
        required |= needed
    properties.update(schema.get("properties", {}))
    required |= set(schema.get("required", []))
    return properties, required


def _fields_table(schema: dict[str, Any], components: dict[str, dict[str, Any]]) -> list[str]:
    properties, required = _flatten(schema, components)
    if not properties:
        return []
    lines = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, prop in properties.items():
        description = prop.get("description", "")
        limits = _constraints(prop)
        if limits:
            description = f"{description} ({limits})" if description else limits
        lines.append(f"| `{name}` | {_cell(_type(prop))} | {_cell(_default(prop, name in required))} | {_cell(description)} |")
    return lines


def openapi_markdown(spec: dict[str, Any]) -> str:
    """The OpenAPI document as Markdown: every operation with its parameters, body and answers, then every schema."""
    components: dict[str, dict[str, Any]] = spec.get("components", {}).get("schemas", {})
    out: list[str] = []
    info = spec.get("info", {})
    out += [f"Generated from the app's OpenAPI {spec.get('openapi', '')} document ({info.get('title', '')}, version {info.get('version', '')}).", ""]
    out += ["| method | path | what |", "|---|---|---|"]
    operations = [(path, method, op) for path, ops in spec.get("paths", {}).items() for method, op in ops.items() if method in HTTP_METHODS]
    for path, method, op in operations:
        out.append(f"| {method.upper()} | [`{_cell(path)}`](#{op['operationId']}) | {_cell(op.get('summary', ''))} |")
    out.append("")
    for path, method, op in operations:
        out += [f"### {method.upper()} `{path}` {{ #{op['operationId']} }}", ""]
        if op.get("summary"):
            out += [f"**{op['summary']}.**", ""]
        if op.get("description"):
            out += [op["description"].strip(), ""]
        params = op.get("parameters", [])
        if params:
            out += ["| parameter | in | type | default | description |", "|---|---|---|---|---|"]
            for param in params:
                schema = param.get("schema", {})
                description = param.get("description", schema.get("description", ""))
                limits = _constraints(schema)
                if limits:
                    description = f"{description} ({limits})"
                default = _default(schema, bool(param.get("required")))
                out.append(f"| `{param['name']}` | {param['in']} | {_cell(_type(schema))} | {_cell(default)} | {_cell(description)} |")
            out.append("")
        body = op.get("requestBody")
        if body:
            for media, content in body.get("content", {}).items():
                schema = content.get("schema", {})
                if "$ref" in schema:
                    schema = components.get(_ref_name(schema["$ref"]), {})
                out += [f"Request body (`{media}`):", ""]
                out += _fields_table(schema, components) or [f"{_type(content.get('schema', {}))}"]
                out.append("")
        out += ["| status | answer | description |", "|---|---|---|"]
        for status, response in sorted(op.get("responses", {}).items()):
            kinds = [f"`{media}`: {_type(c.get('schema', {}))}" for media, c in response.get("content", {}).items()]
            out.append(f"| {status} | {_cell('; '.join(kinds))} | {_cell(response.get('description', ''))} |")
        out.append("")
    out += ["## Schemas", ""]
    for name, schema in sorted(components.items()):
        if name.startswith("Body_"):
            continue  # shown as the request bodies above
        out += [f"### {name} {{ #{_anchor(name)} }}", ""]
        if schema.get("description"):
            out += [schema["description"].strip(), ""]
        table = _fields_table(schema, components)
        out += table if table else [f"Type: {_type(schema)}"]
        out.append("")
    return "\n".join(out)


@functools.cache
def _openapi() -> str:
    from app.web.factory import create_app
    from app.web.settings import Settings

    return openapi_markdown(create_app(Settings(docs=True, metrics=True)).openapi())


# ---------------------------------------------------------------- CLI


@functools.cache
def _cli() -> str:
    os.environ["COLUMNS"] = "110"  # argparse wraps help to the terminal width: fix it, so the page does not depend on who builds it
    from app.cli import COMMANDS, build_parser

    parser = build_parser()
    sub = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    children: dict[str, argparse.ArgumentParser] = sub.choices
    out = ["```text", parser.format_help().rstrip(), "```", ""]
    for command in COMMANDS:
        child = children[command.NAME]
        out += [f"### `{command.NAME}`", "", command.HELP, "", "```text", child.format_help().rstrip(), "```", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- settings and errors


@functools.cache
def _settings() -> str:
    from app.web.settings import settings_table_markdown

    return settings_table_markdown()


@functools.cache
def _errors() -> str:
    from app.web.errors import error_table_markdown

    return error_table_markdown()


# ---------------------------------------------------------------- maps


def _symbolic_range(lo5: float, hi5: float) -> str:
    """The range in terms of C, recognised from its value at C = 5."""
    if lo5 == 0 and math.isclose(hi5, math.log(5)):
        return "[0, log C]"
    if math.isclose(lo5, 1 / 5) and hi5 == 1:
        return "[1/C, 1]"
    return f"[{lo5:g}, {hi5:g}]"


@functools.cache
def _maps() -> str:
    from app.maps.registry import MAPS

    lines = [
        "| map | key | range | at C = 5 | colour map | display exponent | uncertain when | from | meaning |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for spec in MAPS:
        lo, hi = spec.range(5)
        source = "MC samples" if spec.sampled else "deterministic pass"
        lines.append(
            f"| {_cell(spec.title)} | `{spec.name}` | {_symbolic_range(lo, hi)} | [{lo:.3g}, {hi:.4g}] | {spec.colourmap} | {spec.display_power:g} | "
            f"{spec.uncertain_when} | {source} | {_cell(spec.meaning)} |"
        )
    return "\n".join(lines)


MARKERS: dict[str, Callable[[], str]] = {
    "<!-- openapi -->": _openapi,
    "<!-- cli -->": _cli,
    "<!-- settings -->": _settings,
    "<!-- error-codes -->": _errors,
    "<!-- maps -->": _maps,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each marker line with its generated Markdown."""
    for marker, render in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
