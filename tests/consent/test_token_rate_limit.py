"""The token endpoint's per-client rate limit: POST /oauth/token counts against the app once the
client has authenticated; over the limit the answer is 429 with an RFC 6749 error body
(``slow_down``) and ``Retry-After``, for that app only. Counted in the database and in Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from consent.vendors import ratelimit
from tests.consent.oauth_helpers import Vendor
from tests.intents.factories import market_vendor
from tests.web.conftest import MakeClient, client_with
from vault.runtime import Runtime

__all__ = ["client_with"]

LIMIT = 3


@pytest.fixture
def frozen_window(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The rate limiter's clock stopped mid-minute, so no test straddles a window boundary."""
    moment = datetime.now(UTC).replace(second=20, microsecond=0)
    monkeypatch.setattr(ratelimit, "utcnow", lambda: moment)
    return moment


@pytest.fixture(params=["database", "redis"])
def vault(request: pytest.FixtureRequest, client_with: MakeClient) -> TestClient:
    """The vault with a token limit of LIMIT a minute, counting in the database or in Redis."""
    settings: dict[str, Any] = {"token_requests_per_minute": LIMIT}
    if request.param == "redis":
        settings["redis_url"] = request.getfixturevalue("redis_url")
    return client_with(**settings)


def client_credentials(
    vault: TestClient, vendor: Vendor, secret: str | None = None
) -> httpx.Response:
    return vault.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "intents:read"},
        auth=(vendor.client_id, secret or vendor.secret),
    )


def test_a_client_over_its_token_limit_gets_429_slow_down_and_another_client_does_not(
    vault: TestClient, db: Session, rt: Runtime, frozen_window: datetime
) -> None:
    greedy = market_vendor(db, rt, name="Greedy Cycles")
    patient = market_vendor(db, rt, name="Patient Cycles")

    statuses = [client_credentials(vault, greedy).status_code for _ in range(LIMIT + 1)]

    assert statuses == [200] * LIMIT + [429]
    refused = client_credentials(vault, greedy)
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "slow_down"
    assert f"more than {LIMIT} token requests" in body["error_description"]
    assert set(body) == {"error", "error_description"}
    assert refused.headers["retry-after"] == "40"  # the window ends at :00
    assert refused.headers["ratelimit-limit"] == str(LIMIT)
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["cache-control"] == "no-store"
    assert refused.headers["content-type"].startswith("application/json")
    # Another app has its own budget.
    allowed = client_credentials(vault, patient)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["ratelimit-remaining"] == str(LIMIT - 1)


def test_requests_that_fail_client_authentication_use_up_nobodys_budget(
    vault: TestClient, db: Session, rt: Runtime, frozen_window: datetime
) -> None:
    """Client ids are public (they are in every authorization URL): a stranger sending one
    with a wrong secret gets 401 and cannot lock the app out of its tokens."""
    vendor = market_vendor(db, rt, name="Popular Cycles")

    wrong = [client_credentials(vault, vendor, "not-the-secret") for _ in range(LIMIT + 2)]

    assert {r.status_code for r in wrong} == {401}
    assert {r.json()["error"] for r in wrong} == {"invalid_client"}
    statuses = [client_credentials(vault, vendor).status_code for _ in range(LIMIT + 1)]
    assert statuses == [200] * LIMIT + [429]
