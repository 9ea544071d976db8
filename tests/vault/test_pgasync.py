"""The event loop's PostgreSQL connections (``vault.pgasync``): at most ``max_size`` in use,
a wait for one bounded by ``timeout``, connections kept for reuse."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Engine, literal, select

from tests.committed import committed_engine
from tests.helpers import run_async
from vault.pgasync import AsyncPostgres, PoolBusy, compiled

__all__ = ["committed_engine"]

BACKENDS = ["postgresql"]
ONE = compiled(select(literal(1)))


def pool(engine: Engine, **kwargs: float) -> AsyncPostgres:
    return AsyncPostgres(engine.url.render_as_string(hide_password=False), **kwargs)  # type: ignore[arg-type]


def test_a_free_connection_is_taken_at_once_and_kept_for_the_next(
    committed_engine: Engine,
) -> None:
    pg = pool(committed_engine, max_size=2)

    async def run() -> tuple[int, int, int]:
        async with pg.connection() as first, pg.connection() as second:
            pids = (first.backend_pid, second.backend_pid)
        async with pg.connection() as again:
            reused = again.backend_pid
        await pg.close()
        return *pids, reused

    one, two, reused = run_async(run())
    assert one != two
    assert reused in (one, two)


def test_when_every_connection_stays_in_use_a_request_waits_then_gets_pool_busy(
    committed_engine: Engine,
) -> None:
    pg = pool(committed_engine, max_size=1, timeout=0.2)

    async def run() -> str:
        async with pg.connection():
            with pytest.raises(PoolBusy) as refused:
                async with pg.connection():
                    pass
        async with pg.connection() as conn:  # free again: taken at once
            await conn.run(ONE)
        await pg.close()
        return str(refused.value)

    assert run_async(run()) == "no database connection free within 0.2 s"


def test_a_waiting_request_gets_the_connection_another_gives_back(
    committed_engine: Engine,
) -> None:
    pg = pool(committed_engine, max_size=1, timeout=5)
    order: list[str] = []

    async def hold() -> None:
        async with pg.connection():
            order.append("held")
            await asyncio.sleep(0.1)
        order.append("given back")

    async def wait() -> None:
        await asyncio.sleep(0.01)
        async with pg.connection() as conn:
            await conn.run(ONE)
            order.append("served")

    async def run() -> None:
        await asyncio.gather(hold(), wait())
        await pg.close()

    run_async(run())
    assert order == ["held", "given back", "served"]
