"""Routers whose routes decode JSON bodies with :func:`vault.strictjson.loads`.

A body holding text that is not Unicode (a lone UTF-16 surrogate) is then malformed JSON to
FastAPI, which answers its usual 422 before any dependency, validator or handler runs. Every
package makes its routers with :class:`APIRouter` from here (ruff refuses FastAPI's own), and
``vrm.app`` gives the app's router the same route class.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import fastapi
from fastapi import Request, Response
from fastapi.routing import APIRoute

from vault.strictjson import loads


class StrictJSONRequest(Request):
    """A request whose JSON body is decoded by :func:`loads`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route that hands its handler a :class:`StrictJSONRequest`; FastAPI turns the
    ``JSONDecodeError`` it raises into a 422 like any malformed JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_json(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_json


class APIRouter(fastapi.APIRouter):  # noqa: TID251 (the one allowed use)
    """FastAPI's router with :class:`StrictJSONRoute` routes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(route_class=StrictJSONRoute, **kwargs)
