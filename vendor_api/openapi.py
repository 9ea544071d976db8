"""Small helpers for the parts of the vendor API's OpenAPI document written by hand (the token
endpoint, the webhooks): references to components, JSON content, the schemas of models.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

SCHEMAS_REF: Final = "#/components/schemas/"
HEADERS_REF: Final = "#/components/headers/"


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMAS_REF + name}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """A request body's or response's ``content``: ``schema`` as JSON."""
    return {"application/json": {"schema": schema}}


def not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without its ``null`` branch: an optional parameter is left out."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    return branches[0] if len(branches) == 1 else schema


def component_schemas(
    models: Iterable[tuple[type[BaseModel], JsonSchemaMode]],
) -> dict[str, Any]:
    """The JSON schemas of ``models`` (and of the models they use), by name, referring to each
    other as components."""
    _, defs = models_json_schema(list(models), ref_template=SCHEMAS_REF + "{model}")
    found: dict[str, Any] = defs.get("$defs", {})
    return found
