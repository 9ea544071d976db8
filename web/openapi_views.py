"""An OpenAPI document read into what the vendor reference page (``/vendor/docs``) shows.

Only data: descriptions as paragraphs of text and code spans, types as small trees, constraints
as notes. ``templates/openapi_macros.html`` lays them out (and escapes every value).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from vendor_api.openapi import SCHEMAS_REF, not_null, schema_ref

_CODE = re.compile(r"``?([^`]+?)``?")

Span = tuple[bool, str]
"""A piece of a sentence: whether it is code, and its text."""
Inline = list[Span]
"""A sentence or a few, whitespace collapsed (a table cell)."""
Prose = list[Inline]
"""Paragraphs."""


def inline(value: str | None) -> Inline:
    """Plain text with `code` (or ``code``) spans, its whitespace collapsed."""
    parts = _CODE.split(" ".join((value or "").split()))
    # re.split with a group: text, code, text, code, ..., text.
    return [(n % 2 == 1, part) for n, part in enumerate(parts) if part]


def prose(value: str | None) -> Prose:
    """Like :func:`inline`, in paragraphs (split at blank lines)."""
    return [inline(p) for p in (value or "").split("\n\n") if p.strip()]


@dataclass(frozen=True, slots=True)
class TypeLabel:
    """A schema's type in a few words: ``schema`` (a link to a named schema), ``either`` (its
    parts, or'ed), ``const`` (a JSON value), ``array`` and ``map`` (of their one part), or
    ``plain`` text."""

    kind: Literal["schema", "either", "const", "array", "map", "plain"]
    text: str = ""
    parts: tuple[TypeLabel, ...] = ()


def schema_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref", "")
    return ref.removeprefix(SCHEMAS_REF) if ref.startswith(SCHEMAS_REF) else None


def type_label(schema: dict[str, Any]) -> TypeLabel:
    name = schema_name(schema)
    if name:
        return TypeLabel("schema", name)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return TypeLabel("either", parts=tuple(type_label(s) for s in schema[key]))
    if "const" in schema:
        return TypeLabel("const", json.dumps(schema["const"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return TypeLabel("either", parts=tuple(type_label({**schema, "type": k}) for k in kind))
    if kind == "array":
        return TypeLabel("array", parts=(type_label(schema.get("items", {})),))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return TypeLabel("map", parts=(type_label(schema["additionalProperties"]),))
    if not kind:
        return TypeLabel("plain", "any")
    return TypeLabel("plain", f"{kind} ({schema['format']})" if "format" in schema else kind)


@dataclass(frozen=True, slots=True)
class Note:
    """A constraint in words: ``one_of`` (the allowed values), ``max_length``, ``range``
    (low, high), ``above`` (an exclusive minimum), ``default`` or ``example`` (a value shown
    as code)."""

    kind: Literal["one_of", "max_length", "range", "above", "default", "example"]
    values: tuple[str, ...]


def _branches(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield schema
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            yield from _branches(branch)


def notes(schema: dict[str, Any]) -> list[Note]:
    """Constraints, allowed values, default and example."""
    found: list[Note] = []
    for branch in _branches(schema):
        if "enum" in branch:
            found.append(Note("one_of", tuple(str(v) for v in branch["enum"] if v is not None)))
        if "maxLength" in branch:
            found.append(Note("max_length", (str(branch["maxLength"]),)))
        if "minimum" in branch or "maximum" in branch:
            low, high = branch.get("minimum", "…"), branch.get("maximum", "…")
            found.append(Note("range", (str(low), str(high))))
        if "exclusiveMinimum" in branch:
            found.append(Note("above", (str(branch["exclusiveMinimum"]),)))
    if schema.get("default") is not None:
        found.append(Note("default", (json.dumps(schema["default"]),)))
    if schema.get("examples"):
        example = schema["examples"][0]
        found.append(
            Note("example", (example if isinstance(example, str) else json.dumps(example),))
        )
    return found


@dataclass(frozen=True, slots=True)
class FieldRow:
    name: str
    type: TypeLabel
    required: bool
    description: Inline
    notes: list[Note] = field(default_factory=list)
    location: str | None = None
    """Where a parameter goes: ``query``, ``path`` or ``header``."""


@dataclass(frozen=True, slots=True)
class SchemaView:
    """A schema as a page shows it: its name (if a component), its type, its fields."""

    name: str | None
    type: TypeLabel
    description: Prose
    rows: list[FieldRow]


@dataclass(frozen=True, slots=True)
class ResponseView:
    status: str
    description: Inline
    schema: SchemaView | None
    headers: list[str]
    show_fields: bool = False
    """A success body whose fields the page lists (once per schema and operation)."""


Requirement = list[tuple[str, list[str]]]
"""One way to authorise: schemes used together, each with the scopes it needs (none: the
client authenticates itself, ``client_secret_post``)."""


@dataclass(frozen=True, slots=True)
class OperationView:
    anchor: str
    method: str
    path: str
    summary: str
    description: Prose
    security: list[Requirement]
    parameters: list[FieldRow]
    body_media: str | None
    body: SchemaView | None
    responses: list[ResponseView]


@dataclass(frozen=True, slots=True)
class SecuritySchemeView:
    name: str
    type: str | None
    description: Prose
    flows: list[dict[str, Any]]
    """Each flow's ``name``, ``tokenUrl``, ``authorizationUrl`` (if any) and ``scopes``."""


def _status_order(status: str) -> tuple[int, str]:
    return (0, status) if status[:1].isdigit() else (1, status)


class Reader:
    """Reads an OpenAPI document into what the reference page shows, resolving ``$ref``."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        name = schema_name(schema)
        return (name, self.schemas.get(name, {})) if name else (None, schema)

    def view(self, schema: dict[str, Any]) -> SchemaView:
        name, resolved = self.resolve(schema)
        target = resolved
        if resolved.get("type") == "array":  # a list of a named schema: show the items' fields
            target = self.resolve(resolved.get("items", {}))[1]
        required = set(target.get("required", []))
        rows = [
            FieldRow(
                name=key,
                type=type_label(prop),
                required=key in required,
                description=inline(prop.get("description")),
                notes=notes(prop),
            )
            for key, prop in target.get("properties", {}).items()
        ]
        return SchemaView(
            name=name,
            type=type_label(schema),
            description=prose(resolved.get("description")),
            rows=rows,
        )

    def operation(self, path: str, method: str, operation: dict[str, Any]) -> OperationView:
        parameters = [
            FieldRow(
                name=p["name"],
                location=p["in"],
                type=type_label(not_null(p.get("schema", {}))),
                required=bool(p.get("required")),
                description=inline(p.get("description") or p.get("schema", {}).get("description")),
                notes=notes(p.get("schema", {})),
            )
            for p in operation.get("parameters", [])
        ]
        media: str | None = None
        body: SchemaView | None = None
        for media_type, request in operation.get("requestBody", {}).get("content", {}).items():
            media, body = media_type, self.view(request.get("schema", {}))
            break
        responses = []
        shown: set[TypeLabel | None] = set()
        declared: dict[str, Any] = operation.get("responses", {})
        for status, response in sorted(declared.items(), key=lambda kv: _status_order(kv[0])):
            contents: list[dict[str, Any]] = list(response.get("content", {}).values())
            schema = contents[0].get("schema") if contents else None
            view = self.view(schema) if schema else None
            listed = view.type if view else None
            show = bool(view and view.rows and status.startswith("2") and listed not in shown)
            shown.add(listed)
            responses.append(
                ResponseView(
                    status=status,
                    description=inline(response.get("description")),
                    schema=view,
                    headers=list(response.get("headers", {})),
                    show_fields=show,
                )
            )
        security = [
            [(scheme, list(needed)) for scheme, needed in requirement.items()]
            for requirement in operation.get("security", [])
        ]
        return OperationView(
            anchor="op-" + operation.get("operationId", f"{method}-{path}"),
            method=method.upper(),
            path=path,
            summary=operation.get("summary", ""),
            description=prose(operation.get("description")),
            security=security,
            parameters=parameters,
            body_media=media,
            body=body,
            responses=responses,
        )

    def operations(self, section: str = "paths") -> list[OperationView]:
        return [
            self.operation(path, method, operation)
            for path, item in self.document.get(section, {}).items()
            for method, operation in item.items()
        ]

    def components(self) -> list[SchemaView]:
        return [self.view(schema_ref(name)) for name in self.schemas]

    def security_schemes(self) -> list[SecuritySchemeView]:
        schemes = self.document.get("components", {}).get("securitySchemes", {})
        return [
            SecuritySchemeView(
                name=name,
                type=scheme.get("scheme") or scheme.get("type"),
                description=prose(scheme.get("description")),
                flows=[
                    {"name": flow, **values} for flow, values in scheme.get("flows", {}).items()
                ],
            )
            for name, scheme in schemes.items()
        ]
