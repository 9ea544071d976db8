"""The API reference page (``/api/docs``): the whole API's OpenAPI document
(``/api/openapi.json``, :func:`vendor_api.docs.api_openapi`) rendered as HTML by the reader the
vendor reference uses (:mod:`web.openapi_views`), without JavaScript and from this service
alone, so the strict CSP holds (FastAPI's Swagger UI loads from a CDN that it blocks).
"""

from __future__ import annotations

from fastapi import Request, Response

from vault.accounts.dependencies import ViewerDep
from vault.dependencies import RuntimeDep
from vault.routing import APIRouter
from vendor_api.docs import api_openapi
from web.openapi_views import Reader, prose
from web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/api/docs")
def api_reference_page(request: Request, rt: RuntimeDep, viewer: ViewerDep) -> Response:
    """The API reference, rendered from the OpenAPI document."""
    document = api_openapi(request.app, rt.settings)
    reader = Reader(document)
    return render(
        request,
        "api_reference.html",
        {
            "info": document["info"],
            "description": prose(document["info"].get("description")),
            "operations": reader.operations(),
            "webhooks": reader.operations("webhooks"),
            "schemas": reader.components(),
            "security_schemes": reader.security_schemes(),
        },
    )
