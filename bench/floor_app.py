"""The floor of ``bench/http.py``: a bare FastAPI app, one ``async def`` endpoint, small JSON.

Served by uvicorn with the vault's own server flags, so every vault figure can be read as a
fraction of what the framework and the server do for nothing.
"""

from __future__ import annotations

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/")
    async def floor() -> dict[str, str]:
        return {"status": "ok"}

    return app
