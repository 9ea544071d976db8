"""The event loop's Redis connection (``vault.resp.Pipe``), against the real Redis and, for
what a healthy Redis never does (stay silent, go away mid-command), against a local server
that does it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
import redis

from tests.helpers import run_async
from vault.resp import Pipe, RedisError, RedisUnavailable


def key() -> str:
    return f"vrm:test:resp:{uuid.uuid4()}"


def test_commands_answer_with_redis_replies(redis_url: str) -> None:
    name = key()

    async def run() -> list[object]:
        pipe = Pipe(redis_url)
        try:
            return [
                await pipe.call("INCR", name),
                await pipe.call("INCRBY", name, 41),
                await pipe.call("GET", name),
                await pipe.call("EXPIRE", name, 60),
                await pipe.call("GET", key()),
                await pipe.call("MGET", name, key()),
            ]
        finally:
            await pipe.close()

    assert run_async(run()) == [1, 42, b"42", 1, None, [b"42", None]]


def test_an_error_reply_raises_with_redis_message(redis_url: str) -> None:
    name = key()

    async def run() -> int:
        pipe = Pipe(redis_url)
        try:
            await pipe.call("SET", name, "not a number", "EX", 60)
            with pytest.raises(RedisError, match="not an integer"):
                await pipe.call("INCR", name)
            return int(await pipe.call("INCR", key()))  # the connection carries on
        finally:
            await pipe.close()

    assert run_async(run()) == 1


def test_concurrent_commands_each_get_their_own_reply(redis_url: str) -> None:
    names = [key() for _ in range(200)]

    async def run() -> list[int]:
        pipe = Pipe(redis_url)
        try:
            return list(
                await asyncio.gather(*(pipe.call("INCRBY", n, i) for i, n in enumerate(names)))
            )
        finally:
            await pipe.close()

    assert run_async(run()) == list(range(200))


def test_the_url_chooses_the_database(redis_url: str) -> None:
    name = key()
    other = redis_url.rsplit("/", 1)[0] + "/14"

    async def run() -> None:
        pipe = Pipe(other)
        try:
            await pipe.call("SET", name, "here", "EX", 60)
        finally:
            await pipe.close()

    run_async(run())
    assert redis.Redis.from_url(other).get(name) == b"here"
    assert redis.Redis.from_url(redis_url).get(name) is None


def test_after_redis_drops_the_connection_the_next_command_opens_another(
    redis_url: str,
) -> None:
    async def run() -> tuple[int, int]:
        pipe = Pipe(redis_url)
        try:
            mine = int(await pipe.call("CLIENT", "ID"))
            redis.Redis.from_url(redis_url).client_kill_filter(_id=str(mine))
            await asyncio.sleep(0.2)  # the loop reads the close
            return mine, int(await pipe.call("CLIENT", "ID"))
        finally:
            await pipe.close()

    before, after = run_async(run())
    assert after != before


def test_redis_away_is_redis_unavailable() -> None:
    async def run() -> str:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()  # nothing listens there now
        pipe = Pipe(f"redis://127.0.0.1:{port}/0", timeout=1)
        with pytest.raises(RedisUnavailable) as away:
            await pipe.call("INCR", "k")
        return str(away.value)

    assert run_async(run()) == "cannot connect to Redis (ConnectionRefusedError)"


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serving(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_a_late_reply_fails_its_command_and_ends_the_connection() -> None:
    """A server that answers one command late: that command fails after the timeout, the
    command sent after it on that connection fails as lost (its reply would come after the
    late one), and the next command, on a new connection, is answered."""
    connections: list[int] = []

    async def late_for_slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        while data := await reader.read(1024):
            if b"slow" in data:
                await asyncio.sleep(0.5)
            writer.write(b":%d\r\n" % len(connections))

    async def run() -> tuple[object, int]:
        server, url = await serving(late_for_slow)
        pipe = Pipe(url, timeout=0.2)
        try:
            slow = asyncio.ensure_future(pipe.call("INCR", "slow"))
            await asyncio.sleep(0.05)
            behind = await asyncio.gather(pipe.call("INCR", "behind"), return_exceptions=True)
            with pytest.raises(RedisUnavailable, match=r"no reply from Redis within 0\.2 s"):
                await slow
            return behind[0], int(await pipe.call("INCR", "next"))
        finally:
            await pipe.close()
            server.close()

    behind, answered = run_async(run())

    assert isinstance(behind, RedisUnavailable)
    assert answered == 2  # from the second connection
    assert connections == [0, 1]


def test_a_connection_lost_mid_command_fails_every_waiting_command() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    async def run() -> list[BaseException | object]:
        server, url = await serving(hang_up)
        pipe = Pipe(url, timeout=5)
        try:
            return list(
                await asyncio.gather(
                    pipe.call("INCR", "a"), pipe.call("INCR", "b"), return_exceptions=True
                )
            )
        finally:
            await pipe.close()
            server.close()

    lost = run_async(run())
    assert [type(r) for r in lost] == [RedisUnavailable, RedisUnavailable]
    assert str(lost[0]) == "the connection to Redis was lost"


def test_only_redis_urls_are_taken() -> None:
    with pytest.raises(ValueError, match="redis://, rediss:// or unix://"):
        Pipe("http://127.0.0.1:6379")
