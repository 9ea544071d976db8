"""A database outage: every request answers 503 with ``Retry-After`` and the usual error body
(JSON for the APIs, a page for the portal), logged as one line naming the request, and
``/readyz`` says the process is not ready while ``/healthz`` (no database) still answers."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import test_settings as make_settings
from vault.accounts.dependencies import SESSION_COOKIE
from vrm.app import create_app

DOWN_POSTGRES = "postgresql://postgres@127.0.0.1:1/test"
"""A port nobody listens on: every connection is refused."""


@pytest.fixture
def down(backend: str, tmp_path: Path) -> Iterator[TestClient]:
    """A served app whose database is away: PostgreSQL refusing connections, or the SQLite
    file's directory gone."""
    sqlite_url = f"sqlite:///{tmp_path / 'db' / 'vault.db'}"
    url = DOWN_POSTGRES if backend == "postgresql" else sqlite_url
    app = create_app(make_settings(tmp_path / "keys", url))
    if backend == "sqlite":
        shutil.rmtree(tmp_path / "db")  # made by the engine; no connection was opened yet
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        client.cookies.set(SESSION_COOKIE, "a-session-from-before-the-outage")
        yield client


def assert_unavailable(response, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    request_id = response.headers["x-request-id"]
    lines = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(lines) == 1  # one line, not a traceback
    assert "\n" not in lines[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/vendor/v1/profile", {"Authorization": "Bearer some-access-token"}),
        ("GET", "/api/v1/profile", {}),
        ("POST", "/oauth/token", {"Authorization": "Basic YXBwLXg6c2VjcmV0"}),
    ],
)
def test_an_api_call_during_an_outage_is_a_503_with_retry_after(
    down: TestClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    data = {"grant_type": "client_credentials"} if method == "POST" else None
    response = down.request(method, path, headers=headers, data=data)

    assert_unavailable(response, caplog)
    body = response.json()
    assert body["error"] == "service_unavailable"
    assert "try again" in body["detail"]


def test_a_portal_page_during_an_outage_is_a_503_page(
    down: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = down.get("/connections")

    assert_unavailable(response, caplog)
    assert response.headers["content-type"].startswith("text/html")
    assert "Briefly unavailable" in response.text
    assert "content-security-policy" in response.headers


def test_the_proxys_request_id_names_the_failed_request(
    down: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = down.get("/connections", headers={"X-Request-ID": "edge-4711"})

    assert response.headers["x-request-id"] == "edge-4711"
    assert_unavailable(response, caplog)


def test_readyz_is_503_while_the_database_is_away_and_healthz_still_answers(
    down: TestClient,
) -> None:
    ready = down.get("/readyz")

    assert ready.status_code == 503
    assert int(ready.headers["retry-after"]) > 0
    assert ready.json()["error"] == "service_unavailable"
    assert "database" in ready.json()["checks"]
    assert "keys" not in ready.json()["checks"]
    assert down.get("/healthz").status_code == 200


def test_readyz_is_200_when_the_database_and_keys_are_there(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_when_the_key_store_is_unreadable(
    client: TestClient,
    rt,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    def unreadable(*_args: object) -> None:
        raise PermissionError("keys")

    monkeypatch.setattr(rt.keys, "current_version", unreadable)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"keys": "PermissionError"}
