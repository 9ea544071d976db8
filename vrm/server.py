"""How ``vrm serve`` runs uvicorn: as ``uvicorn.run`` does, but with several workers each
accepting on a listening socket of its own (``SO_REUSEPORT``), so that the kernel spreads new
connections over them.

uvicorn's workers all accept from the one socket their parent bound. Each worker's event loop
takes every connection waiting when it wakes, and the first to wake is usually the one that
was idle: a client (or a proxy) that opens its keep-alive connections at once gets all of them
on one worker, which then serves alone while the others idle. ``bench/http.py`` measured it
with two workers and 32 connections: in some runs one worker did all the work for the whole
measurement, the machine 23 to 28% idle, two workers serving no more than one.

With ``SO_REUSEPORT`` each worker listens on a socket of its own bound to the same address,
and the kernel picks a socket for each new connection by a hash of its addresses. The parent
binds the address first (with ``SO_REUSEPORT``, never listening: a taken port fails at once,
in the parent, as before) and hands each worker, instead of that socket, a recipe for its own
(:class:`ReusePortSocket`): unpickled in the worker, it binds a new socket. Everything else is
uvicorn's supervisor as it is (health checks, restarts, signals).

On Linux, where ``SO_REUSEPORT`` spreads connections so; elsewhere, and with one worker,
``--reload`` or a Unix socket, ``uvicorn.run`` as it is. A worker that stops closes its
socket, and connections still waiting in that socket's queue (accepted by the kernel, not yet
by the worker) are reset.
"""

from __future__ import annotations

import socket
import sys
from typing import Any


class ReusePortSocket(socket.socket):
    """A socket bound with ``SO_REUSEPORT`` that, sent to another process (pickled, as
    uvicorn's spawned workers receive their sockets), arrives as a new socket of its own bound
    to the same address, not as a copy of this one."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (reuse_port_socket, (self.getsockname()[0], self.getsockname()[1]))


def reuse_port_socket(host: str, port: int) -> ReusePortSocket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (and ``SO_REUSEADDR``, as
    uvicorn binds its own), not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = ReusePortSocket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run(app: str, **options: Any) -> None:
    """``uvicorn.run(app, **options)``; with several ``workers``, each on its own socket."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    workers = options.get("workers") or 1
    shared = workers == 1 or options.get("reload") or options.get("uds") or options.get("fd")
    if shared or not sys.platform.startswith("linux"):
        uvicorn.run(app, **options)
        return
    config = uvicorn.Config(app, **options)
    try:
        sock = reuse_port_socket(config.host, config.port)
    except OSError as exc:
        uvicorn.config.logger.error(exc)
        sys.exit(STARTUP_FAILURE)
    host, port = sock.getsockname()[:2]
    uvicorn.config.logger.info(
        "Uvicorn running on http://%s:%d, a listening socket per worker (Press CTRL+C to quit)",
        host,
        port,
    )
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
