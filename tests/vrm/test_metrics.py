"""``/metrics``: what an operator's Prometheus scrapes, and who else may not."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.orm import Session

from consent.ledger.service import create_checkpoint
from tests.conftest import test_settings as make_settings
from tests.consent.factories import connect, individual, make_app
from tests.helpers import sign_in
from tests.sequencer import sequence
from tests.served import served, vault
from tests.test_multi_process import worker_holding
from vault.runtime import Runtime
from vrm.app import create_app

TOKEN = "metrics-" + "0123456789abcdef" * 3
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped: Samples, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def operated(rt: Runtime) -> Iterator[TestClient]:
    """The app with a metrics token set."""
    settings = rt.settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})
    app = create_app(runtime=dataclasses.replace(rt, settings=settings))
    with TestClient(app, follow_redirects=False) as client:
        yield client


def scrape(client: TestClient | httpx.Client) -> Samples:
    response = client.get("/metrics", headers=OPERATOR)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "not-bearer"],
)
def test_metrics_are_refused_without_the_operator_token(
    operated: TestClient, headers: dict[str, str]
) -> None:
    operated.get("/healthz")

    response = operated.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "vrm_" not in response.text


def test_metrics_do_not_exist_without_a_token_setting(client: TestClient) -> None:
    response = client.get("/metrics", headers=OPERATOR)

    assert response.status_code == 404
    assert "vrm_" not in response.text


def test_requests_are_counted_by_route_template_and_status(operated: TestClient) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    route = "/vendor/v1/intents/{intent_id}/offers"
    before = scrape(operated)

    for intent_id in ids:  # no token: refused, but routed
        operated.post(f"/vendor/v1/intents/{intent_id}/offers", json={})
    operated.get("/healthz")
    text = operated.get("/metrics", headers=OPERATOR).text
    after = samples(text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    offers = {"route": route, "method": "POST", "status": "401"}
    assert delta("vrm_http_request_duration_seconds_count", **offers) == 3
    assert delta("vrm_http_request_duration_seconds_bucket", **offers, le="+Inf") == 3
    assert delta("vrm_http_request_duration_seconds_bucket", **offers, le="10.0") == 3
    assert value(after, "vrm_http_request_duration_seconds_sum", **offers) > 0
    healthz = {"route": "/healthz", "method": "GET", "status": "200"}
    assert delta("vrm_http_request_duration_seconds_count", **healthz) == 1
    assert not any(intent_id in text for intent_id in ids)  # templates, never raw paths


def test_unrouted_and_oversize_requests_share_one_label(operated: TestClient) -> None:
    before = scrape(operated)
    secret_path = "/ada-lovelace-" + uuid.uuid4().hex

    operated.get(secret_path)
    operated.put("/api/v1/profile/fields/given_name", content=b"x" * (2 * 1024 * 1024))
    text = operated.get("/metrics", headers=OPERATOR).text
    after = samples(text)

    for method, status in (("GET", "404"), ("PUT", "413")):
        labels = {"route": "unrouted", "method": method, "status": status}
        grew = value(after, "vrm_http_request_duration_seconds_count", **labels) - value(
            before, "vrm_http_request_duration_seconds_count", **labels
        )
        assert grew == 1
    assert secret_path not in text


def test_gauges_show_a_queued_webhook_and_an_unsigned_ledger_event(
    operated: TestClient, db: Session, rt: Runtime
) -> None:
    app = make_app(db, name="Bicycle Repair Co")
    app.webhook_url = "http://127.0.0.1:9/hooks"
    db.commit()
    person = individual(operated, db, rt, given_name="Ada")
    before = scrape(operated)

    connect(db, rt, person, app, ["given_name"])  # a ledger event and a webhook message
    queued = scrape(operated)
    sequence(db)
    create_checkpoint(db, rt)
    db.commit()
    signed = scrape(operated)

    assert value(queued, "vrm_metrics_database_up") == 1
    depth = "vrm_webhook_queue_depth"
    assert value(queued, depth) == value(before, depth) + 1
    assert value(queued, "vrm_webhook_oldest_waiting_age_seconds") >= 0
    unsigned = "vrm_ledger_unsigned_events"
    assert value(queued, unsigned) >= 1
    assert value(queued, unsigned) == value(before, unsigned) + 1
    assert value(signed, unsigned) == 0
    assert ("vrm_ledger_checkpoint_age_seconds", frozenset()) in signed
    assert "Ada" not in operated.get("/metrics", headers=OPERATOR).text


def test_refused_sign_ins_are_counted(operated: TestClient, rt: Runtime) -> None:
    before = scrape(operated)
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.org"

    statuses = [
        sign_in(operated, email, "wrong password").status_code
        for _ in range(rt.settings.signin_max_failures_per_account + 1)
    ]
    after = scrape(operated)

    assert statuses[-1] == 429
    assert value(after, "vrm_signin_throttled_total") == value(
        before, "vrm_signin_throttled_total"
    ) + statuses.count(429)
    assert value(after, "vrm_signin_throttle_buckets") >= 1
    assert email not in operated.get("/metrics", headers=OPERATOR).text


def test_a_scrape_sees_the_requests_of_every_worker(
    backend: str,
    new_database: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """``vrm serve --workers 2``: requests answered by both workers (each on a connection of
    its own, told apart by the process holding it) are all in one scrape, whichever worker
    answers it."""
    if backend != "sqlite":
        pytest.skip("one backend is enough: the counts live in files, not the database")
    database_url = new_database(backend, migrated=True)
    key_dir = tmp_path / "keys"
    with (
        vault(database_url, key_dir),
        served(database_url, key_dir, workers=2, metrics_token=TOKEN) as server,
    ):
        healthz = {"route": "/healthz", "method": "GET", "status": "200"}
        count = "vrm_http_request_duration_seconds_count"
        with httpx.Client(base_url=server.url) as operator:
            before = value(scrape(operator), count, **healthz)  # the start-up probes
        answered: dict[int, int] = {}
        for _ in range(200):
            with httpx.Client(base_url=server.url) as client:
                response = client.get("/healthz")
                assert response.status_code == 200
                worker = worker_holding(server, response)
                answered[worker] = answered.get(worker, 0) + 1
            if len(answered) == 2 and min(answered.values()) >= 3:
                break
        assert len(answered) == 2, server.log()

        for _ in range(3):  # whichever worker takes the scrape
            with httpx.Client(base_url=server.url) as operator:
                scraped = scrape(operator)
            assert value(scraped, count, **healthz) - before == sum(answered.values())


def test_settings_refuse_a_short_metrics_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metrics_token"):
        make_settings(tmp_path, "sqlite://", metrics_token="short")
