"""The whole intent loop, with Authlib's OAuth client as the vendor and a real webhook receiver:
app token -> list intents -> offer -> the individual accepts sharing email -> signed webhook ->
tokens for the accepted offer -> the vendor reads exactly the shared field."""

from __future__ import annotations

import json
import uuid

from authlib.integrations.httpx_client import OAuth2Client
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from consent.webhooks.delivery import deliver_due
from consent.webhooks.signing import verify_signature, webhook_secret_for
from intents.decisions import OfferDecisions
from intents.tokens import GRANT_TYPE
from tests.consent.factories import individual
from tests.consent.oauth_helpers import Vendor
from tests.helpers import post_form
from tests.intents.factories import make_intent, market_vendor, offer_body
from tests.webhook_receiver import Receiver
from vault.runtime import Runtime

BASE = "http://testserver"


def vendor_client(client: TestClient, vendor: Vendor, **token: object) -> OAuth2Client:
    """Authlib's OAuth 2 client for the vendor, its HTTP going through the app under test."""
    return OAuth2Client(
        client_id=vendor.client_id,
        client_secret=vendor.secret,
        token_endpoint_auth_method="client_secret_basic",
        transport=client._transport,
        base_url=BASE,
        token=token or None,
    )


def deliveries(db: Session, rt: Runtime, receiver: Receiver, secret: str) -> list[dict]:
    """Run the worker's delivery once; every payload the receiver got, verified."""
    while deliver_due(rt.sessions, rt):
        pass
    return [verify_signature(secret, r.headers, r.body) for r in receiver.requests]


def test_the_whole_loop_from_app_token_to_reading_the_shared_field(
    client: TestClient, db: Session, rt: Runtime, receiver: Receiver
) -> None:
    owner = individual(client, db, rt, phone="+31 20 794 6138")
    intent = make_intent(db, rt, owner)
    vendor = market_vendor(db, rt, webhook_url=receiver.url)
    oauth = vendor_client(client, vendor)

    # 1. The app's own token, with client credentials.
    token = oauth.fetch_token(
        f"{BASE}/oauth/token", grant_type="client_credentials", scope="intents:read offers:write"
    )
    assert token["scope"] == "intents:read offers:write"
    assert "refresh_token" not in token

    # 2. List open intents with a category subtree, region and budget filter.
    page = oauth.get(
        "/vendor/v1/intents",
        params={"category": "sports", "country": "NL", "currency": "EUR", "budget_max": "1000"},
    )
    assert page.status_code == 200, page.text
    [listed] = page.json()["data"]
    assert listed["id"] == str(intent.id)
    pseudonym = listed["owner"]

    # 3. Offer.
    offer = oauth.post(f"/vendor/v1/intents/{listed['id']}/offers", json=offer_body("849.00"))
    assert offer.status_code == 201, offer.text
    offer_id = offer.json()["id"]

    # 4. The individual accepts it in the portal, sharing only the email address.
    accept = f"/intents/{intent.id}/offers/{offer_id}/accept"
    done = post_form(client, accept, {"share": ["email"], "duration": "30d"}, form_page=accept)
    assert done.status_code == 303

    # 5. The signed webhook reaches the vendor.
    payloads = deliveries(db, rt, receiver, webhook_secret_for(rt, vendor.app))
    by_type = {p["type"]: p["data"] for p in payloads}
    assert set(by_type) == {"offer.accepted", "consent.granted"}
    accepted = by_type["offer.accepted"]
    assert accepted["offer_id"] == offer_id
    assert accepted["owner"] == pseudonym
    assert accepted["shared_fields"] == ["profile:email"]
    assert accepted["grant_id"] == by_type["consent.granted"]["grant_id"]
    assert "@" not in json.dumps(payloads)  # no personal value travels in a webhook

    # 6. The accepted offer becomes tokens, once.
    tokens = oauth.fetch_token(f"{BASE}/oauth/token", grant_type=GRANT_TYPE, offer_id=offer_id)
    assert tokens["scope"] == "profile:email"
    assert tokens["refresh_token"]
    again = client.post(
        "/oauth/token",
        data={"grant_type": GRANT_TYPE, "offer_id": offer_id},
        auth=(vendor.client_id, vendor.secret),
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    # 7. The vendor reads exactly the shared field, and the individual sees the read.
    reader = vendor_client(client, vendor, **tokens)
    profile = reader.get("/vendor/v1/profile")
    assert profile.status_code == 200, profile.text
    assert list(profile.json()["fields"]) == ["email"]
    assert profile.json()["fields"]["email"].endswith("@example.org")
    assert "+31" not in profile.text
    log = client.get("/connections").text
    assert vendor.app.name in log and "Reads so far" in log

    # 8. Its refresh token rotates like any other.
    refreshed = reader.refresh_token(f"{BASE}/oauth/token", refresh_token=tokens["refresh_token"])
    assert refreshed["access_token"] != tokens["access_token"]


def test_the_other_vendors_are_told_their_offers_lapsed(
    client: TestClient, db: Session, rt: Runtime, receiver: Receiver
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    winner = market_vendor(db, rt, name="Winner", webhook_url=receiver.url)
    loser = market_vendor(db, rt, name="Loser", webhook_url=receiver.url + "/loser")
    ids = {}
    for vendor in (winner, loser):
        oauth = vendor_client(client, vendor)
        oauth.fetch_token(
            f"{BASE}/oauth/token", grant_type="client_credentials", scope="offers:write"
        )
        ids[vendor.app.name] = oauth.post(
            f"/vendor/v1/intents/{intent.id}/offers", json=offer_body()
        ).json()["id"]
    OfferDecisions(db, rt).accept(owner, intent.id, uuid.UUID(ids["Winner"]))
    db.commit()

    while deliver_due(rt.sessions, rt):
        pass

    got = {
        (r.path, json.loads(r.body)["type"], json.loads(r.body)["data"]["offer_id"])
        for r in receiver.requests
    }
    assert got == {
        ("/hooks", "offer.accepted", ids["Winner"]),
        ("/hooks/loser", "offer.lapsed", ids["Loser"]),
    }
    lapsed = next(json.loads(r.body) for r in receiver.requests if r.path == "/hooks/loser")
    assert lapsed["data"]["reason"] == "another_offer_accepted"
    assert "grant_id" not in lapsed["data"]
    verify_signature(
        webhook_secret_for(rt, loser.app),
        next(r.headers for r in receiver.requests if r.path == "/hooks/loser"),
        next(r.body for r in receiver.requests if r.path == "/hooks/loser"),
    )


def test_an_offer_accepted_without_sharing_gives_no_tokens(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    vendor = market_vendor(db, rt)
    oauth = vendor_client(client, vendor)
    oauth.fetch_token(f"{BASE}/oauth/token", grant_type="client_credentials", scope="offers:write")
    offer_id = oauth.post(f"/vendor/v1/intents/{intent.id}/offers", json=offer_body()).json()["id"]
    OfferDecisions(db, rt).accept(owner, intent.id, uuid.UUID(offer_id))
    db.commit()

    response = client.post(
        "/oauth/token",
        data={"grant_type": GRANT_TYPE, "offer_id": offer_id},
        auth=(vendor.client_id, vendor.secret),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "without sharing" in response.json()["error_description"]


def test_another_app_cannot_exchange_an_accepted_offer(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    vendor, thief = market_vendor(db, rt, name="Vendor"), market_vendor(db, rt, name="Thief")
    oauth = vendor_client(client, vendor)
    oauth.fetch_token(f"{BASE}/oauth/token", grant_type="client_credentials", scope="offers:write")
    offer_id = oauth.post(f"/vendor/v1/intents/{intent.id}/offers", json=offer_body()).json()["id"]
    OfferDecisions(db, rt).accept(owner, intent.id, uuid.UUID(offer_id), fields=["email"])
    db.commit()

    stolen = client.post(
        "/oauth/token",
        data={"grant_type": GRANT_TYPE, "offer_id": offer_id},
        auth=(thief.client_id, thief.secret),
    )
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    # The rightful vendor still can, once.
    mine = client.post(
        "/oauth/token",
        data={"grant_type": GRANT_TYPE, "offer_id": offer_id},
        auth=(vendor.client_id, vendor.secret),
    )
    assert mine.status_code == 200, mine.text


def test_discovery_lists_the_accepted_offer_grant(client: TestClient) -> None:
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert GRANT_TYPE in metadata["grant_types_supported"]
