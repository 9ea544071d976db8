"""Two vendors serving one person receive nothing that tells them it is the same person.

One person publishes two intents; two vendor apps (of different vendors) list both, each makes
an offer on one, the person accepts each sharing a different field, each vendor exchanges its
accepted offer for tokens, reads userinfo and the profile, is told of the grant and of its
revocation by webhook, and fetches the consent receipts of its grant (whose ledger entry bytes
are decoded too). Every value one vendor received about the person is compared with every value
the other received: apart from the intents themselves, which the person broadcast to every
vendor, and the log's own material (checkpoints and proof hashes), none may be equal.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from consent.webhooks.delivery import deliver_due
from consent.webhooks.signing import verify_signature, webhook_secret_for
from intents.tokens import GRANT_TYPE
from tests.consent.factories import individual
from tests.consent.oauth_helpers import (
    Vendor,
    authorize_url,
    consent,
    new_verifier,
    oauth_client,
    query_of,
)
from tests.helpers import post_form
from tests.intents.factories import make_intent, market_vendor, offer_body
from tests.sequencer import run_sequencer
from tests.webhook_receiver import Receiver
from vault.accounts.models import Account
from vault.runtime import Runtime

BASE = "http://testserver"
LOG_MATERIAL = frozenset({"checkpoint", "inclusion_proof", "tree_size"})
"""Receipt keys holding the log's own state (the same for every entry), not the person's."""


def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every scalar in a document, with its path; JWS bodies and base64 ledger entries are
    opened and walked too, since a vendor can read them."""
    if isinstance(value, dict):
        found: list[tuple[str, Any]] = []
        for key, item in value.items():
            if key in LOG_MATERIAL:
                continue
            found += leaves(item, f"{path}.{key}")
            if key == "entry" and isinstance(item, str):
                found += leaves(json.loads(base64.b64decode(item)), f"{path}.entry<json>")
        return found
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in leaves(item, f"{path}[{i}]")]
    if isinstance(value, str) and value.count(".") == 2 and value.startswith("ey"):
        try:
            body = value.split(".")[1]
            opened = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, binascii.Error):
            opened = None
        if isinstance(opened, dict):
            return [(path, value), *leaves(opened, f"{path}<jws>")]
    return [(path, value)]


class Seen:
    """Everything one vendor app received."""

    def __init__(self, client: TestClient, vendor: Vendor) -> None:
        self.vendor = vendor
        self.documents: list[Any] = []
        self.http = httpx.Client(transport=client._transport, base_url=BASE)
        self.oauth = OAuth2Client(
            client_id=vendor.client_id,
            client_secret=vendor.secret,
            token_endpoint_auth_method="client_secret_basic",
            transport=client._transport,
            base_url=BASE,
        )
        self.app_token = self.got(
            self.oauth.fetch_token(
                f"{BASE}/oauth/token",
                grant_type="client_credentials",
                scope="intents:read offers:write",
            )
        )

    def got(self, document: Any) -> Any:
        self.documents.append(document)
        return document

    def get(self, path: str, token: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {(token or self.app_token)['access_token']}"}
        response = self.http.get(path, headers=headers)
        assert response.status_code == 200, response.text
        return self.got(response.json())

    def values(self) -> dict[Any, str]:
        """Every string received, with where. Numbers are left out: they are amounts, sizes and
        times in whole seconds (an id_token's ``auth_time`` is the sign-in both apps were
        authorized in, as OpenID Connect defines it), and two vendors served in the same second
        can line up by time whatever the vault sends."""
        return {value: path for path, value in leaves(self.documents) if isinstance(value, str)}


def journey(
    browser: TestClient,
    db: Session,
    rt: Runtime,
    receiver: Receiver,
    vendors: tuple[Vendor, Vendor],
    person: Account,
) -> tuple[Seen, Seen, set[Any]]:
    """One person's whole story with both vendors; what each vendor received, and the values
    of the intents as listed (the same for every vendor by design, but for the owner)."""
    lunch = make_intent(db, rt, person, title="Lunch for two near the station")
    bike = make_intent(db, rt, person)
    velo, ride = Seen(browser, vendors[0]), Seen(browser, vendors[1])
    broadcast: set[Any] = set()
    for seen in (velo, ride):
        listing = seen.get("/vendor/v1/intents")
        for item in listing["data"]:
            if item["id"] in (str(lunch.id), str(bike.id)):
                broadcast |= {v for _, v in leaves({k: v for k, v in item.items() if k != "owner"})}
                seen.get(f"/vendor/v1/intents/{item['id']}")
    grants: dict[str, str] = {}
    offers = ((velo, bike, "email", "family_name"), (ride, lunch, "given_name", "phone"))
    for seen, intent, shared, asked in offers:
        offer = seen.http.post(
            f"/vendor/v1/intents/{intent.id}/offers",
            json=offer_body("40.00"),
            headers={"Authorization": f"Bearer {seen.app_token['access_token']}"},
        )
        assert offer.status_code == 201, offer.text
        offer_id = seen.got(offer.json())["id"]
        accept = f"/intents/{intent.id}/offers/{offer_id}/accept"
        done = post_form(browser, accept, {"share": [shared], "duration": "30d"}, accept)
        assert done.status_code == 303, done.text
        tokens = seen.got(
            seen.oauth.fetch_token(f"{BASE}/oauth/token", grant_type=GRANT_TYPE, offer_id=offer_id)
        )
        seen.get("/vendor/v1/profile", tokens)
        grants[seen.vendor.client_id] = seen.get(f"/vendor/v1/offers/{offer_id}")["grant_id"]
        # Then the app asks for one more field through OpenID Connect (id_token, userinfo).
        oidc = oauth_client(browser, seen.vendor, f"openid profile:{asked}")
        verifier = new_verifier()
        url, _ = authorize_url(oidc, verifier, nonce=new_verifier())
        code = query_of(consent(browser, url))["code"]
        signed_in = seen.got(
            oidc.fetch_token(f"{BASE}/oauth/token", code=code, code_verifier=verifier)
        )
        seen.get("/oauth/userinfo", signed_in)
        seen.get("/vendor/v1/profile", signed_in)

    for seen in (velo, ride):
        grant_id = grants[seen.vendor.client_id]
        run_sequencer(rt)
        seen.get(f"/vendor/v1/receipts/{grant_id}")
        revoked = post_form(browser, f"/connections/{grant_id}/revoke", {}, "/connections")
        assert revoked.status_code == 303, revoked.text
        run_sequencer(rt)
        seen.get(f"/vendor/v1/receipts/{grant_id}")  # a revoked grant's receipt, too
    while deliver_due(rt.sessions, rt):
        pass
    for seen, path in ((velo, "/hooks/v"), (ride, "/hooks/r")):
        secret = webhook_secret_for(rt, seen.vendor.app)
        mine = [
            verify_signature(secret, r.headers, r.body) for r in receiver.requests if r.path == path
        ]
        mine = [m for m in mine if m["data"].get("grant_id") in grants.values()]
        assert {"offer.accepted", "consent.granted", "consent.revoked"} <= {m["type"] for m in mine}
        seen.documents += mine
    return velo, ride, broadcast


def test_two_vendors_receive_no_common_value_about_one_person(
    client: TestClient,
    second_client: TestClient,
    db: Session,
    rt: Runtime,
    receiver: Receiver,
) -> None:
    vendors = (
        market_vendor(db, rt, name="Velo Shop", webhook_url=receiver.url + "/v"),
        market_vendor(db, rt, name="Ride Along", webhook_url=receiver.url + "/r"),
    )
    values = {"given_name": "Zephyrine", "family_name": "Odegard", "phone": "+31 20 794 6138"}
    person = individual(client, db, rt, **values)
    velo, ride, broadcast = journey(client, db, rt, receiver, vendors, person)
    # Control: another person's story with the same vendors. What the vendors also received
    # about them is the vault's and the vendors' own vocabulary, not about the first person.
    other = individual(second_client, db, rt, **values)
    velo_other, ride_other, _ = journey(second_client, db, rt, receiver, vendors, other)
    vocabulary = velo_other.values().keys() | ride_other.values().keys()

    velo_values, ride_values = velo.values(), ride.values()
    common = {
        value: (velo_values[value], ride_values[value])
        for value in velo_values.keys() & ride_values.keys()
        if value not in broadcast and value not in vocabulary
    }
    assert common == {}
    # The comparison does see identifiers: each vendor's subject, receipts' principal, owner.
    for seen in (velo, ride):
        paths = {path for path, _ in leaves(seen.documents)}
        assert any(p.endswith("pii_principal_id") for p in paths)
        assert any(p.endswith("entry<json>.subject") for p in paths)
        assert any(p.endswith("<jws>.sub") for p in paths)  # the id_token's
        assert any(p.endswith(".owner") for p in paths)
