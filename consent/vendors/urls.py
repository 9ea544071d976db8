"""Which webhook URLs the worker posts to: https to public addresses only (plain http to the
loopback address in development).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httpx

_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def internal_address_problem(host: str, *, resolve: bool) -> str | None:
    """Refuse hosts that are, or resolve to, non-public addresses (SSRF into the network).

    IP literals and ``localhost`` are checked always; names are resolved only when
    ``resolve`` (the worker, just before it posts, which then connects to the addresses
    checked: :func:`check_webhook_url`).
    """
    return _checked_addresses(host, resolve=resolve)[0]


def _checked_addresses(host: str, *, resolve: bool) -> tuple[str | None, tuple[str, ...]]:
    """(why ``host`` is refused or None, the addresses it resolved to when it is a name)."""
    name = host.strip("[]").lower()
    try:
        addresses = [ipaddress.ip_address(name)]
        resolved: tuple[str, ...] = ()
    except ValueError:
        if name == "localhost" or name.endswith(".localhost"):
            return "the webhook URL points at this machine", ()
        if not resolve:
            return None, ()
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return None, ()  # unresolvable: the POST fails and is retried like any outage
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        resolved = tuple(dict.fromkeys(str(address) for address in addresses))
    if any(not _public(address) for address in addresses):
        return "the webhook URL points at a private or internal address", ()
    return None, resolved


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Global, and so is any IPv4 address it carries: an IPv6 address that embeds one (NAT64,
    6to4, Teredo, IPv4-mapped) reaches that IPv4 host through a translator or relay."""
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if any(address in network for network in _NAT64):
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.extend(address.teredo)
        if address.ipv4_mapped is not None:
            embedded.append(address.ipv4_mapped)
        return all(inner.is_global for inner in embedded)
    return True


def webhook_url_problem(
    url: str, *, allow_loopback_http: bool, resolve: bool = False
) -> str | None:
    """Why the worker will not POST to ``url``, or ``None`` if it will.

    https only; plain http only to the loopback address (127.0.0.1, localhost, [::1]) and only
    when ``allow_loopback_http`` (development).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return "the webhook URL is malformed"
    if not host:
        return "the webhook URL has no host"
    if parts.username is not None or parts.password is not None:
        return "the webhook URL must not carry credentials"
    if parts.scheme == "https":
        return internal_address_problem(host, resolve=resolve)
    if parts.scheme == "http" and allow_loopback_http and _is_loopback(host):
        return None
    if parts.scheme == "http" and _is_loopback(host):
        return "plain http is allowed only to the loopback address in development"
    return "the webhook URL must be https (or http://127.0.0.1, localhost or [::1] in development)"


@dataclass(frozen=True, slots=True)
class CheckedUrl:
    """A webhook URL checked just before a POST."""

    problem: str | None
    """Why the worker will not POST to it, or ``None``."""
    host: str
    addresses: tuple[str, ...]
    """What the host name resolved to and was checked; the connection goes to these (empty
    for an IP literal or a loopback URL in development, which need no lookup)."""


def check_webhook_url(url: str, *, allow_loopback_http: bool) -> CheckedUrl:
    """:func:`webhook_url_problem` with the host name resolved, and the addresses checked."""
    problem = webhook_url_problem(url, allow_loopback_http=allow_loopback_http)
    if problem is not None:
        return CheckedUrl(problem, "", ())
    parts = urlsplit(url)
    if parts.scheme != "https":
        # Plain http to the loopback address (development).
        return CheckedUrl(None, parts.hostname or "", ())
    try:
        # The name as the HTTP client sends it (IDNA 2008, lowercase), so that the name
        # looked up here is the one the connection is pinned for.
        host = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeDecodeError):
        return CheckedUrl("the webhook URL is malformed", "", ())
    problem, addresses = _checked_addresses(host, resolve=True)
    if problem is None and not addresses and not is_ip_literal(host):
        # Never let the HTTP client look the name up on its own: its answer was not checked.
        problem = "the webhook URL's host name does not resolve"
    return CheckedUrl(problem, host, addresses)


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IP address (IPv6 in brackets or not), not a name to resolve."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host) in (
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("::1"),
        )
    except ValueError:
        return False
