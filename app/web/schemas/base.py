"""The base of every API answer's model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ApiModel"]


class ApiModel(BaseModel):
    """A model of the API's JSON: in the OpenAPI schema, a field with a default is still required, because every
    answer carries every field (``null`` when it has no value), so the generated TypeScript types say so."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)
