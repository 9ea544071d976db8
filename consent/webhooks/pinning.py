"""Connect to the address that was checked (no DNS rebinding).

The worker resolves a webhook URL's host and refuses private and internal addresses just
before it posts (``consent.vendors.urls.check_webhook_url``). An HTTP client that resolved the
name again could be sent elsewhere by a DNS server that answers a public address to the check
and a private one to the connection. The delivery client's connections go instead to the
addresses the check accepted, while the request keeps the URL's host name: the ``Host``
header, the TLS server name (SNI) and certificate verification all use the name, so an https
endpoint is verified as usual.

The pins are a context variable: each delivery sets them for its own task around its POST
(:func:`pinned`), so concurrent deliveries to different hosts do not see each other's. A
connection kept alive by the pool goes to an address that was checked when it was opened (a
few seconds before at most: the pool's keep-alive expiry).
"""

from __future__ import annotations

import ssl
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import httpcore
import httpx

from consent.vendors.urls import is_ip_literal

_PINS: ContextVar[dict[str, tuple[str, ...]] | None] = ContextVar("webhook_pins", default=None)


@contextmanager
def pinned(host: str, addresses: Sequence[str]) -> Iterator[None]:
    """Within the block (in this task), connections to ``host`` go to ``addresses``, tried in
    order; with no addresses, connections to ``host`` are not pinned."""
    if not addresses:
        yield
        return
    token = _PINS.set({**(_PINS.get() or {}), host.lower(): tuple(addresses)})
    try:
        yield
    finally:
        _PINS.reset(token)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting a pinned host name to its checked addresses."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pins = _PINS.get()
        addresses = (pins or {}).get(host.lower(), (host,))
        if pins and host.lower() not in pins and not is_ip_literal(host):
            # Inside a pinned delivery, a name nobody checked is never looked up.
            raise httpcore.ConnectError(f"{host} is not the host that was checked")
        options = list(socket_options or ())
        for address in addresses[:-1]:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # the next checked address
        return await self.inner.connect_tcp(addresses[-1], port, timeout, local_address, options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are not delivered over Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def pinned_transport(
    *,
    verify: ssl.SSLContext | str | bool = True,
    inner: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections honour :func:`pinned` (no proxy, no environment)."""
    transport = httpx.AsyncHTTPTransport(verify=verify, trust_env=False)
    limits = httpx.Limits()
    # httpx has no parameter for httpcore's network backend: the transport's pool is replaced
    # with the one it would make, plus the backend (tests/consent/test_webhooks_pinning.py
    # notices if httpx changes this).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=PinnedBackend(inner),
    )
    return transport
