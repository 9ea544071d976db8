"""``vrm serve``: the web service."""

from __future__ import annotations

from typing import Annotated

import typer

from vault.settings import get_settings
from vrm.cli.common import service


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Start the web service."""
    import uvicorn  # imported here: only this command needs the server (start-up time)

    settings = get_settings()
    with service():
        pass
    uvicorn.run(
        "vrm.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
    )
