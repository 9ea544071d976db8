"""``vrm serve``: the web service, and with ``--with-worker`` the worker's jobs beside it."""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Annotated

import typer

from vault.metrics import multiprocess_dir, use_multiprocess_dir
from vault.settings import Settings, get_settings
from vrm import server
from vrm.cli.common import service
from vrm.cli.worker import Background
from vrm.logs import json_log_config

WORKER_HEALTHCHECK_SECONDS = 60


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    with_worker: Annotated[
        bool,
        typer.Option(
            help="Also deliver webhooks and run the scheduled jobs in this process, as `vrm "
            "worker` does (development: `make run`). In production run `vrm worker` apart."
        ),
    ] = False,
    worker_interval: Annotated[
        float,
        typer.Option(min=0.1, max=3600, help="With --with-worker: seconds between passes."),
    ] = 1.0,
) -> None:
    """Start the web service."""
    settings = get_settings()
    counts_dir = None
    if workers > 1 and multiprocess_dir() is None:
        # Each worker counts in files here, so a scrape of any worker sees them all.
        counts_dir = Path(tempfile.mkdtemp(prefix="vrm-metrics-"))
        use_multiprocess_dir(counts_dir)
    try:
        _serve(settings, host, port, workers, reload, with_worker, worker_interval)
    finally:
        if counts_dir is not None:
            shutil.rmtree(counts_dir, ignore_errors=True)


def _serve(
    settings: Settings,
    host: str | None,
    port: int | None,
    workers: int,
    reload: bool,
    with_worker: bool,
    worker_interval: float,
) -> None:
    import uvicorn  # imported here: only this command needs the server (start-up time)

    with service() as rt:
        rt.engine.dispose()  # the schema check's connection; the server opens its own
        background = Background(rt, worker_interval) if with_worker else None
        thread = None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        if background is not None:
            # A thread of the server's (supervisor) process, whatever --workers says: one
            # worker per command. uvicorn shuts down on SIGINT or SIGTERM, then raises the
            # signal again for the handler it found: this one, which stops the worker after
            # the delivery under way (the default would end the process there and then).
            def stop_worker(_signum: int, _frame: object) -> None:
                background.stop()

            for sig in previous:
                signal.signal(sig, stop_worker)
            thread = threading.Thread(target=background.run, name="vrm-worker")
            thread.start()
            typer.echo(
                f"webhook delivery and scheduled jobs running in this process, every "
                f"{worker_interval:g} s"
            )
        try:
            server.run(
                "vrm.app:serve_app",
                factory=True,
                host=host or settings.host,
                port=port or settings.port,
                workers=workers,
                # A worker answers the supervisor's health checks once it has imported the
                # service, which takes seconds on a busy machine: uvicorn's 5 s killed and
                # restarted workers before they could start, over and over.
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
                reload=reload,
                log_config=(
                    json_log_config()
                    if settings.log_format == "json"
                    else uvicorn.config.LOGGING_CONFIG
                ),
                proxy_headers=bool(settings.trusted_proxies),
                forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
                # Live offer streams (``web/live.py``) stay open until the browser leaves:
                # a shutdown ends the ones still open after this many seconds.
                timeout_graceful_shutdown=5,
            )
        finally:
            if background is not None and thread is not None:
                background.stop()
                thread.join()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                typer.echo("webhook worker stopped")
