"""Rate limits shared by every process: in Redis when it is configured, else in the database
(sharded rows). The same behaviour is checked on both, and on both databases."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent.vendors import ratelimit
from consent.vendors.models import RateLimitWindow
from tests.intents.factories import app_token, market_vendor
from tests.web.conftest import MakeClient
from vault.db import make_engine
from vault.runtime import Runtime

START = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)


@pytest.fixture(params=["database", "redis"])
def limiters(
    request: pytest.FixtureRequest, committed_rt: Runtime
) -> Callable[[], ratelimit.Limiter]:
    """Factory: a new limiter as another process would make it (own engine, own client)."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return lambda: ratelimit.RedisLimiter(url)
    rt = committed_rt
    return lambda: ratelimit.DatabaseLimiter(make_engine(rt.engine.url))


@pytest.fixture
def app_id(committed_rt: Runtime) -> Any:
    with committed_rt.sessions() as db:
        return market_vendor(db, committed_rt).app.id


def test_a_new_window_resets_the_count(
    limiters: Callable[[], ratelimit.Limiter], app_id: Any
) -> None:
    limiter = limiters()
    counts = [
        limiter.hit(app_id, "read", 10, now=START + timedelta(seconds=s)).count
        for s in (0, 10, 29, 30, 31)
    ]
    assert counts == [1, 2, 3, 1, 2]  # 10:00:30, :40, :59 | 10:01:00, :01


def test_reads_and_writes_count_apart(
    limiters: Callable[[], ratelimit.Limiter], app_id: Any
) -> None:
    limiter = limiters()
    assert [limiter.hit(app_id, "read", 10, now=START).count for _ in "ab"] == [1, 2]
    assert limiter.hit(app_id, "write", 10, now=START).count == 1


def test_processes_share_one_count_and_parallel_hits_are_all_counted(
    limiters: Callable[[], ratelimit.Limiter], app_id: Any
) -> None:
    """Four "processes" (limiters with their own connections), each with requests in
    parallel: every hit is counted once, and the app is refused past its limit whichever
    process serves it."""
    processes = [limiters() for _ in range(4)]
    barrier = threading.Barrier(len(processes))
    seen: list[int] = []
    lock = threading.Lock()

    def serve(limiter: ratelimit.Limiter) -> None:
        barrier.wait(timeout=30)
        for _ in range(15):
            count = limiter.hit(app_id, "read", 50, now=START).count
            with lock:
                seen.append(count)

    threads = [threading.Thread(target=serve, args=(p,)) for p in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(seen) == 60
    assert processes[0].hit(app_id, "read", 50, now=START).count == 61  # every hit counted
    # A hit sees every hit committed before it, but not one still in flight in another
    # process (at most one per other process here): the last to start sees at least 57.
    in_flight = len(processes) - 1
    assert max(seen) >= 60 - in_flight
    assert sum(1 for c in seen if c > 50) >= 1  # the last ones were over the limit


def test_no_one_row_takes_every_request_of_an_app(committed_rt: Runtime, app_id: Any) -> None:
    limiter = ratelimit.DatabaseLimiter(committed_rt.engine)
    for _ in range(64):
        limiter.hit(app_id, "read", 1000, now=START)
    with committed_rt.sessions() as db:
        rows = db.scalar(
            select(func.count())
            .select_from(RateLimitWindow)
            .where(RateLimitWindow.app_id == app_id)
        )
        total = db.scalar(select(func.sum(RateLimitWindow.count)))
    assert rows is not None and rows > 1  # spread over shards
    assert total == 64


def test_with_redis_out_of_reach_a_vendor_request_is_a_503(
    client_with: MakeClient, db: Session, rt: Runtime
) -> None:
    """Redis counts the requests before any work: away, the request is refused as when the
    database is away (503, ``Retry-After``), not answered uncounted."""
    vendor_client: TestClient = client_with(redis_url="redis://127.0.0.1:1/0")
    headers = app_token(db, rt, market_vendor(db, rt))

    response = vendor_client.get("/vendor/v1/intents", headers=headers)

    assert response.status_code == 503, response.text
    assert response.json()["error"] == "service_unavailable"
    assert response.headers["retry-after"]


def test_with_redis_configured_the_api_counts_there(
    client_with: MakeClient, db: Session, rt: Runtime, redis_url: str
) -> None:
    vendor_client: TestClient = client_with(redis_url=redis_url, vendor_reads_per_minute=2)
    vendor = market_vendor(db, rt)
    headers = app_token(db, rt, vendor)
    moment = datetime.now(UTC)
    if moment.second >= 55:  # do not straddle a window boundary
        threading.Event().wait(61 - moment.second)

    statuses = [vendor_client.get("/vendor/v1/intents", headers=headers).status_code for _ in "abc"]

    assert statuses == [200, 200, 429]
    assert not db.scalar(select(func.count()).select_from(RateLimitWindow))  # none in the db
    # The same app, counted by another "process" on the same Redis, is over its limit too.
    other = ratelimit.RedisLimiter(redis_url)
    assert other.hit(vendor.app.id, "read", 2).count == 4
