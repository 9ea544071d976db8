"""Routers whose routes only ever decode a request body to Unicode text.

Python decodes some input into a ``str`` that is not text: a JSON escape of a lone UTF-16
surrogate (``"\\ud800"``), or a multipart form declaring a character set such as UTF-7 or
``unicode_escape`` (``+2AA-`` and ``\\ud800`` are U+D800 in those). Such a string cannot be
encoded, so it fails far from the input (encrypting a profile field, binding a database
parameter, rendering an answer) with a 500. Here:

- a JSON body is decoded with :func:`vault.strictjson.loads`: to FastAPI a lone surrogate is
  malformed JSON, answered with its usual 422 before any dependency or handler runs;
- a multipart form must be UTF-8 (browsers declare no character set, which means UTF-8):
  another declared character set is a 415, before the form is read. URL-encoded forms, query
  strings and paths are decoded as UTF-8 with replacement, so they cannot carry a surrogate.

Every package makes its routers with :class:`APIRouter` from here (ruff refuses FastAPI's
own), and ``vrm.app`` gives the app's router the same route class.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import fastapi
from fastapi import Request, Response, params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers

from vault.errors import VaultError
from vault.strictjson import loads

_UTF8 = {"utf-8", "ascii"}
Q = TypeVar("Q", bound=BaseModel)


class UnsupportedMediaType(VaultError):
    """The body is not of a type this operation reads (its ``Content-Type``)."""

    status_code = 415
    code = "unsupported_media_type"


class FormNotUTF8(UnsupportedMediaType):
    """A multipart form that declares a character set other than UTF-8."""


JSON_BODY = frozenset({"application/json"})
FORM_BODY = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def form_body(
    properties: dict[str, dict[str, Any]], required: list[str], *, optional: bool = False
) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads an ``application/x-www-form-urlencoded`` body
    itself (the OAuth endpoints, for Authlib): documents it and makes it the type accepted."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {
        "requestBody": {
            "required": not optional,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    }


def query_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads its query itself (:func:`read_query`): each
    field of ``model`` documented as a query parameter, as FastAPI documents declared ones.

    For a hot route with many parameters: FastAPI works out each declared parameter's kind
    again on every request (a fifth of an intent listing's CPU time with eleven of them,
    ``bench/cpu.py --profile``); one validation of one model does the same checks."""
    schema = model.model_json_schema()
    parameters = []
    for name, field in schema["properties"].items():
        field = {k: v for k, v in field.items() if not (k == "default" and v is None)}
        parameter = {
            "name": name,
            "in": "query",
            "required": name in schema.get("required", ()),
            "schema": field,
        }
        if "description" in field:
            parameter["description"] = field["description"]
        parameters.append(parameter)
    # A 422 as FastAPI declares for validated parameters (the app's documents describe it).
    return {"parameters": parameters, "responses": {"422": {"description": "Validation Error"}}}


def read_query(request: Request, model: type[Q]) -> Q:
    """The request's query as ``model`` (a repeated parameter's last value, as FastAPI takes
    it; other parameters ignored), or the 422 FastAPI gives for a declared parameter that does
    not validate."""
    given = request.query_params
    values = {name: given[name] for name in model.model_fields if name in given}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in errors]
        ) from None


def body_media_types(route: APIRoute) -> frozenset[str] | None:
    """The media types ``route`` reads a body in: those its OpenAPI ``requestBody`` declares
    (routes that read the body themselves say so in ``openapi_extra``), else JSON or a form
    as its body parameters are; None when it reads no body."""
    declared = ((route.openapi_extra or {}).get("requestBody") or {}).get("content")
    if declared:
        return frozenset(media.lower() for media in declared)
    if route.body_field is None:
        return None
    return FORM_BODY if isinstance(route.body_field.field_info, params.Form) else JSON_BODY


def _media_refused(headers: Headers, accepted: frozenset[str]) -> bool:
    """Whether a request declares its body a type that is not ``accepted``. ``+json`` types
    count as JSON; a body with no ``Content-Type`` is read as the operation's own type, as
    FastAPI reads it (JSON that does not parse is then a 422)."""
    content_type = headers.get("content-type")
    media = (content_type or "").partition(";")[0].strip().lower()
    if not media or media in accepted:
        return False
    return not ("application/json" in accepted and media.endswith("+json"))


def _form_charset_refused(content_type: str | None) -> bool:
    """Whether a multipart form declares a character set other than UTF-8 (Starlette would
    decode its fields with it); parsed as Starlette parses it."""
    if not content_type:
        return False  # most requests: no body
    media_type, params = parse_options_header(content_type)
    charset = params.get(b"charset")
    if media_type != b"multipart/form-data" or charset is None:
        return False
    try:
        return codecs.lookup(charset.decode("latin-1")).name not in _UTF8
    except LookupError:
        return True


class UnicodeRequest(Request):
    """A request whose JSON body is decoded by :func:`loads`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class UnicodeRoute(APIRoute):
    """A route that refuses a multipart form in another character set than UTF-8 and hands
    its handler a :class:`UnicodeRequest` (FastAPI turns the ``JSONDecodeError`` it raises
    into a 422 like any malformed JSON)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        accepted = body_media_types(self)
        refusal = (
            "Send the body as " + " or ".join(sorted(accepted)) + " (its Content-Type)."
            if accepted
            else ""
        )

        async def unicode_only(request: Request) -> Response:
            # Before any dependency: a body of the wrong type is refused before credentials
            # are looked at, whoever sends it.
            if accepted and _media_refused(request.headers, accepted):
                raise UnsupportedMediaType(refusal)
            if _form_charset_refused(request.headers.get("content-type")):
                raise FormNotUTF8(
                    "Send the form as UTF-8, as browsers do: this one declares another "
                    "character set."
                )
            return await handler(UnicodeRequest(request.scope, request.receive))

        return unicode_only


class APIRouter(fastapi.APIRouter):  # noqa: TID251 (the one allowed use)
    """FastAPI's router with :class:`UnicodeRoute` routes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(route_class=UnicodeRoute, **kwargs)
