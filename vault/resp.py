"""Redis from the event loop, for the one command every vendor request sends (the rate
limit's ``INCR``, :class:`consent.vendors.ratelimit.RedisLimiter`).

redis-py's asyncio client spent 90 to 108 µs of CPU on an ``INCR`` round trip, and its bare
connection (``send_packed_command``, ``read_response``) 84 to 96 µs, against 34 to 42 µs for
the same bytes written and read on asyncio's streams (uvloop, 5,000 round trips each,
2026-12-07): its locks, timeouts and retries around each command cost more than the round
trip. Through :class:`Pipe` an ``INCR`` takes 39 to 40 µs, through redis-py 72 to 86 µs, in
one run. :class:`Pipe` is one connection per event loop, shared by every request: a command is
written at once and its reply read in order (Redis answers a connection's commands in the
order they came), by an :class:`asyncio.Protocol` whose replies hiredis parses. Commands of
concurrent requests travel together; nothing waits for a free connection.

It speaks only what the limiter needs: commands of bulk strings, replies of integers,
strings, arrays or errors. A lost connection fails the commands waiting on it and the next
command opens a new one; a reply that does not come within ``timeout`` fails its command and
ends the connection (every command after it fails as lost), so that a hung Redis costs each
command its timeout and nothing piles up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis


class RedisError(Exception):
    """Redis refused a command (an error reply): the message is Redis's own."""


class RedisUnavailable(ConnectionError):
    """No connection to Redis, or no reply within the timeout."""


def command(*parts: str | bytes | int) -> bytes:
    """One command in Redis's protocol (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        raw = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    """Commands waiting for their replies, in the order they were sent, each with the time
    past which it fails. One timer watches the oldest (every command has the same timeout, so
    the oldest is the first due): an ``INCR`` took 39 to 40 µs of CPU so, 43 to 44 µs with a
    timeout context per command (10,000 each, uvloop)."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=RedisError)
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.timeout = 0.0

    def watch(self, deadline: float) -> None:
        """A command sent, due by ``deadline`` (the loop's clock)."""
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_at(deadline, self._expire)

    def _expire(self) -> None:
        """The oldest command's time is up: fail the commands past their time and give up
        on the connection (replies come in order, so every later one is late too; kept, it
        would gather commands that never end while Redis hangs). The next command opens a
        new one. Otherwise watch the next one due."""
        self.timer = None
        now = asyncio.get_running_loop().time()
        late = False
        for waiter, deadline in self.waiting:
            if deadline > now:
                break
            late = True
            if not waiter.done():
                waiter.set_exception(
                    RedisUnavailable(f"no reply from Redis within {self.timeout:g} s")
                )
        if late:
            self.closed = True  # at once: no command is written to it from now on
            assert self.transport is not None
            self.transport.abort()  # the rest fail as lost (connection_lost)
        elif self.waiting:
            self.watch(self.waiting[0][1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while self.waiting:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError:  # not Redis speaking: give up on this connection
                assert self.transport is not None
                self.transport.close()
                return
            if reply is False:  # not all of it yet
                return
            waiter, _ = self.waiting.popleft()
            if waiter.done():  # its caller stopped waiting (a timeout, a cancellation)
                continue
            if isinstance(reply, RedisError):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        while self.waiting:
            waiter, _ = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(RedisUnavailable("the connection to Redis was lost"))


class Pipe:
    """One connection to the Redis of ``url``, opened by the first command in the running
    event loop; :meth:`close` closes it. ``redis://[[user]:password@]host[:port][/db]``,
    ``rediss://`` the same over TLS (the server's certificate verified), or
    ``unix://[[user]:password@]/path/to/socket[?db=N]``."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("a Redis URL starts with redis://, rediss:// or unix://")
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.path = parts.path
        self.password = unquote(parts.password) if parts.password else None
        self.username = unquote(parts.username) if parts.username else None
        if parts.scheme == "unix":
            db = dict(parse_qsl(parts.query)).get("db", "0")
        else:
            db = parts.path.strip("/") or "0"
        self.db = int(db)
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Lock | None = None

    async def call(self, *parts: str | bytes | int) -> Any:
        """One command's reply (an ``int``, ``bytes``, a list, or None)."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._open()
        return await self._send(protocol, command(*parts))

    async def _send(self, protocol: _Protocol, packed: bytes) -> Any:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        deadline = loop.time() + self.timeout
        protocol.timeout = self.timeout
        protocol.waiting.append((waiter, deadline))
        assert protocol.transport is not None
        protocol.transport.write(packed)
        protocol.watch(deadline)
        return await waiter

    async def _open(self) -> _Protocol:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # one connection however many requests find none
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.timeout):
                    if self.scheme == "unix":
                        _, protocol = await loop.create_unix_connection(_Protocol, self.path)
                    else:
                        _, protocol = await loop.create_connection(
                            _Protocol, self.host, self.port, ssl=self.scheme == "rediss" or None
                        )
            except (OSError, TimeoutError) as exc:
                raise RedisUnavailable(f"cannot connect to Redis ({type(exc).__name__})") from exc
            try:
                if self.password is not None:
                    auth = (self.username, self.password) if self.username else (self.password,)
                    await self._send(protocol, command("AUTH", *auth))
                if self.db:
                    await self._send(protocol, command("SELECT", self.db))
            except BaseException:
                assert protocol.transport is not None
                protocol.transport.close()
                raise
            self._protocol = protocol
            return protocol

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
