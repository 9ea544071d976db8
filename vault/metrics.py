"""Prometheus metrics: what each process counts, the pure ASGI middleware that times requests,
and the document a scrape gets.

Requests are labelled by the route's template (``/vendor/v1/intents/{intent_id}/offers``), the
method and the status, never by the path itself: no identifier, no personal data, and a number
of series that does not grow with traffic. A request that reached no route (a 404, a body
refused before routing) is labelled ``unrouted``.

Several processes (``vrm serve --workers N``, a ``vrm worker`` on the same machine) share their
counts through prometheus-client's multiprocess mode: each process writes its samples to files
in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape of any process adds them all up. The library picks
the mode from that variable when it is imported; :func:`use_multiprocess_dir` sets it later
(``vrm serve`` does, before any sample is recorded)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNROUTED = "unrouted"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_SECONDS = Histogram(
    "vrm_http_request_duration_seconds",
    "HTTP requests by route template, method and status: latency until the response was "
    "sent (its _count counts requests).",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WEBHOOK_DELIVERIES = Counter(
    "vrm_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, retrying (failed, tried again later), "
    "abandoned (failed for the last time), claim_expired (another worker took it over).",
    ["outcome"],
)
SIGNIN_THROTTLED = Counter(
    "vrm_signin_throttled",
    "Sign-in, sign-up and import attempts refused because too many failed for the account "
    "or the client address.",
)


def use_multiprocess_dir(path: Path) -> None:
    """Count in ``path`` from now on, and in every process started after this (they inherit
    the variable). Before any sample of a labelled metric is recorded in this process: the
    samples (children) made before keep counting in memory."""
    os.environ[MULTIPROC_ENV] = str(path)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def clear_multiprocess_dir(path: Path) -> None:
    """Remove the sample files of a previous run (counts restart with the service)."""
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def _route_of(scope: Scope) -> str:
    """The template of the route that took the request (a mount's prefix, such as
    ``/static``, for the files under it)."""
    template = getattr(scope.get("route"), "path_format", None)
    if isinstance(template, str):
        return template
    if "app_root_path" in scope and "endpoint" in scope:  # a mount: its prefix, then any path
        return f"{scope['root_path']}/{{path}}"
    return UNROUTED


class MetricsMiddleware:
    """Times every HTTP request and counts it by route template, method and status.

    Outermost, so that a body refused by the size limit is counted too. What a request pays:
    two clock reads, one wrapped ``send`` and one histogram observation (a cached child, no
    label lookup after the first request of a kind)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers when the app raises before starting a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            key = (_route_of(scope), method, status)
            child = self._children.get(key)
            if child is None:
                child = REQUEST_SECONDS.labels(key[0], method, str(status))
                if len(self._children) < 10_000:  # bounded: templates x methods x statuses
                    self._children[key] = child
            child.observe(time.perf_counter() - start)  # type: ignore[attr-defined]


class _Process(Collector):
    """This process's metrics, or every process's in multiprocess mode."""

    def collect(self) -> Iterable:  # type: ignore[type-arg]
        if multiprocess_dir():
            gathered = CollectorRegistry()
            MultiProcessCollector(gathered)  # type: ignore[no-untyped-call]
            return gathered.collect()
        return REGISTRY.collect()


def exposition(*extra: Collector) -> bytes:
    """The text a scrape gets: the processes' counts and ``extra`` collectors (computed now)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Process())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)
