"""The intent page's live offers (Server-Sent Events) against real ``vrm serve`` processes: an
offer made through one process arrives on a stream served by the other, a reconnect with
``Last-Event-ID`` loses no offer, the stream is the owner's alone and ends at sign-out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from intents.models import Intent
from tests.consent.factories import individual
from tests.helpers import post_form
from tests.intents.factories import app_token, make_intent, market_vendor, offer_body
from tests.test_multi_process import Browser, Deployment, a_browser, deployment
from vault.runtime import Runtime

__all__ = ["deployment"]

STREAM_TIMEOUT = httpx.Timeout(30.0)


@dataclass
class Event:
    name: str
    id: str | None
    data: dict[str, object]


def events(response: httpx.Response) -> Iterator[Event]:
    """The stream's events, as an EventSource parses them (comments and retry skipped)."""
    name, event_id, data = "message", None, []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield Event(name, event_id, json.loads("\n".join(data)))
            name, event_id, data = "message", None, []
        elif line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("id: "):
            event_id = line[len("id: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])


def first(stream: Iterator[Event], name: str, **match: object) -> Event:
    for event in stream:
        if event.name == name and all(event.data.get(k) == v for k, v in match.items()):
            return event
    raise AssertionError(f"the stream ended without a {name} event matching {match}")


@contextmanager
def stream_of(
    client: httpx.Client, intent: Intent, last_event_id: str | None = None
) -> Iterator[httpx.Response]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with client.stream(
        "GET", f"/intents/{intent.id}/live", headers=headers, timeout=STREAM_TIMEOUT
    ) as response:
        yield response


def a_person_with_an_intent(rt: Runtime, at: httpx.Client) -> Intent:
    with rt.sessions() as db:
        person = individual(at, db, rt)
        return make_intent(db, rt, person)


def a_vendor(rt: Runtime, name: str = "Velo Shop") -> dict[str, str]:
    with rt.sessions() as db:
        return app_token(db, rt, market_vendor(db, rt, name=name))


@pytest.fixture
def browser() -> Iterator[Browser]:
    with a_browser() as at:
        yield at


def test_an_offer_made_through_the_other_process_arrives_on_the_stream(
    deployment: Deployment, browser: Browser
) -> None:
    a, b = deployment.a, deployment.b
    intent = a_person_with_an_intent(deployment.rt, browser(a))
    vendor = a_vendor(deployment.rt, "Quick Lunch")

    with stream_of(browser(a), intent) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        made = httpx.post(
            f"{b.url}/vendor/v1/intents/{intent.id}/offers",
            headers=vendor,
            json=offer_body("42.50", message="Two lunches at the station."),
        )
        assert made.status_code == 201, made.text
        event = first(stream, "offer", id=made.json()["id"])
        html = str(event.data["html"])
        assert "Quick Lunch" in html and "42.50" in html and "Two lunches" in html
        assert 'name="csrf_token"' in html
        counts = first(stream, "count")
        assert counts.data == {"shown": 1, "waiting": 1}


def test_a_reconnect_with_the_last_event_id_gets_the_offers_made_while_away(
    deployment: Deployment, browser: Browser
) -> None:
    a, b = deployment.a, deployment.b
    intent = a_person_with_an_intent(deployment.rt, browser(a))
    one, two = a_vendor(deployment.rt, "One"), a_vendor(deployment.rt, "Two")
    url = f"{b.url}/vendor/v1/intents/{intent.id}/offers"
    first_offer = httpx.post(url, headers=one, json=offer_body("10")).json()["id"]

    with stream_of(browser(a), intent) as response:
        seen = first(events(response), "offer", id=first_offer)
    assert seen.id
    second_offer = httpx.post(url, headers=two, json=offer_body("11")).json()["id"]

    with stream_of(browser(b), intent, last_event_id=seen.id) as response:
        again = first(events(response), "offer", id=second_offer)
    assert "Two" in str(again.data["html"])


def test_a_withdrawn_offer_leaves_the_page(deployment: Deployment, browser: Browser) -> None:
    a, b = deployment.a, deployment.b
    intent = a_person_with_an_intent(deployment.rt, browser(a))
    vendor = a_vendor(deployment.rt)
    made = httpx.post(
        f"{b.url}/vendor/v1/intents/{intent.id}/offers", headers=vendor, json=offer_body()
    ).json()["id"]

    with stream_of(browser(a), intent) as response:
        stream = events(response)
        assert first(stream, "offer", id=made).data["html"]
        gone = httpx.delete(f"{b.url}/vendor/v1/offers/{made}", headers=vendor)
        assert gone.status_code == 204
        assert first(stream, "offer", id=made).data["html"] == ""
        assert first(stream, "count").data == {"shown": 0, "waiting": 0}


def test_the_stream_ends_at_sign_out_through_the_other_process(
    deployment: Deployment, browser: Browser
) -> None:
    a, b = deployment.a, deployment.b
    intent = a_person_with_an_intent(deployment.rt, browser(a))

    with stream_of(browser(a), intent) as response:
        assert response.status_code == 200
        signed_out = post_form(browser(b), "/signout", {}, "/account")
        assert signed_out.status_code == 303
        names = [event.name for event in events(response)]  # ends by itself
    assert names[-1] == "signed-out"


def test_the_stream_is_refused_to_anyone_but_the_owner(
    deployment: Deployment, browser: Browser
) -> None:
    a = deployment.a
    intent = a_person_with_an_intent(deployment.rt, browser(a))

    with a_browser() as other:
        with deployment.rt.sessions() as db:
            individual(other(a), db, deployment.rt)
        assert other(a).get(f"/intents/{intent.id}/live").status_code == 404
    assert httpx.get(f"{a.url}/intents/{intent.id}/live").status_code == 401
    assert browser(a).get("/intents/not-an-id/live").status_code == 404
