"""Every route of the app decodes request bodies only to Unicode text (``vault.routing``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from vault.routing import UnicodeRoute


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router
            yield from _routes(route.original_router.routes)


def test_every_route_of_the_app_is_a_unicode_route(app: FastAPI) -> None:
    routes = list(_routes(app.router.routes))
    assert len(routes) > 50  # the walk found the included routers
    assert [r.path for r in routes if not isinstance(r, UnicodeRoute)] == []
