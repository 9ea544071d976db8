"""The vendor API reference page (``/vendor/docs``): the OpenAPI document of
:mod:`vendor_api.docs` rendered as HTML, without JavaScript, under the strict CSP, after a
worked example of the whole loop (token, intents, offer, webhook, tokens for the accepted offer).

This module computes the example's data (ids, bodies, the webhook's signature, commands and
pretty-printed answers) and :mod:`web.openapi_views` reads the document;
``templates/vendor_reference.html`` and ``templates/openapi_macros.html`` lay both out.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import Request, Response

from consent.oauth.tokens import ACCESS_TOKEN_SECONDS
from consent.webhooks import signing
from intents.events import OfferAcceptedData
from intents.tokens import GRANT_TYPE as ACCEPTED_OFFER_GRANT
from vault.accounts.dependencies import ViewerDep
from vault.dependencies import RuntimeDep
from vault.routing import APIRouter
from vault.settings import Settings
from vendor_api.docs import VENDOR_PREFIX, error_codes, vendor_openapi
from vendor_api.schemas import IntentOut, IntentPage, OfferOut, VendorProfileOut
from vendor_api.token_docs import TOKEN_PATH, TokenResponse
from web.openapi_views import Reader, inline
from web.templating import render

router = APIRouter(include_in_schema=False)


# -- The worked example ---------------------------------------------------------------------------

EXAMPLE_SECRET: Final = "whsec_" + base64.b64encode(b"example-secret-not-a-real-one!!!").decode()
"""A made-up signing secret: the sample webhook on the page is signed with it."""

VERIFY_SNIPPET: Final = '''\
import base64, hashlib, hmac, json, time


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> dict:
    """Check a VRM Vault webhook (Standard Webhooks); return its payload or raise ValueError."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        raise ValueError("webhook-timestamp is too far from now")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for signature in headers["webhook-signature"].split():
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise ValueError("no valid signature")
'''
"""What a vendor runs on each webhook: the raw body bytes, before any JSON parsing."""

_IDS: Final = {
    "intent": "0b6f4a52-8c1e-4d7a-9f3b-2e5c7a1d9e40",
    "offer": "5d2e8f10-3a4b-4c6d-8e9f-0a1b2c3d4e5f",
    "grant": "9a7c3e21-6b5d-4f8e-a1c2-3d4e5f607182",
    "message": "c4a1e7d2-58b3-4f96-a0d1-7e2b9c3f6a85",
}
_OWNER: Final = "anon-3f9c2a7be81d4c06a5e7f1b2d3c4e5f6"
_SUB: Final = "7e1d9c3b5a2f4e6d8c0b1a2938475665e4d3c2b1a0f9e8d7c6b5a49382716051"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def worked_example(settings: Settings, now: datetime | None = None) -> dict[str, str]:
    """The commands and answers of the whole loop, built from the API's own models (so their
    shapes match the reference) and dated from today (so an offer's validity is in range)."""
    base = settings.base_url
    # Yesterday morning: every sample moment is past, the offer's validity and expiry ahead.
    today = (now or datetime.now(UTC)).replace(hour=9, minute=0, second=0, microsecond=0)
    today -= timedelta(days=1)
    app_token = TokenResponse(
        access_token="q8Vd3kLm0RzT1yXw5bNc7hJf2pGs4aUe6iOo9lKj1Hg",  # noqa: S106 (a sample)
        token_type="Bearer",  # noqa: S106
        expires_in=ACCESS_TOKEN_SECONDS,
        scope="intents:read offers:write",
    )
    intent = IntentOut(
        id=_IDS["intent"],
        owner=_OWNER,
        category="sports.bicycles",
        category_label="Sports and outdoors > Bicycles",
        title="Road bike, size 56",
        description="Carbon or aluminium, disc brakes. Delivered or picked up in Utrecht.",
        quantity=1,
        max_budget="900.00",
        currency="EUR",
        country="NL",
        city="Utrecht",
        online=True,
        needed_by=(today + timedelta(days=21)).date(),
        expires_at=today + timedelta(days=30),
        published_at=today - timedelta(hours=2),
        your_offer=None,
    )
    valid_until = today.replace(hour=18) + timedelta(days=8)
    offer_request = {
        "price": "849.00",
        "currency": "EUR",
        "message": "Shimano 105, size 56, delivered within a week.",
        "valid_until": _at(valid_until),
    }
    offer = OfferOut(
        id=_IDS["offer"],
        intent_id=_IDS["intent"],
        owner=_OWNER,
        status="live",
        price="849.00",
        currency="EUR",
        message=offer_request["message"],
        valid_until=valid_until,
        created_at=today + timedelta(minutes=5),
        updated_at=today + timedelta(minutes=5),
        decided_at=None,
        lapse_reason=None,
        grant_id=None,
        shared_fields=[],
        tokens_claimed=False,
    )
    accepted_at = today + timedelta(hours=3)
    shared = ["profile:given_name", "profile:email"]
    event = {
        "type": "offer.accepted",
        "timestamp": _at(accepted_at),
        "data": OfferAcceptedData(
            offer_id=_IDS["offer"],
            intent_id=_IDS["intent"],
            owner=_OWNER,
            offer_status="accepted",
            price="849.00",
            currency="EUR",
            grant_id=_IDS["grant"],
            shared_fields=shared,
        ).model_dump(mode="json"),
    }
    # The exact bytes the worker sends, and their signature under the example secret.
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    timestamp = int(accepted_at.timestamp()) + 2
    signature = signing.sign(EXAMPLE_SECRET, _IDS["message"], timestamp, body.encode())
    user_token = TokenResponse(
        access_token="Zx4c8Vb2Nm6Lk0Jh3Gf5Ds7Ap9Qw1Er3Ty5Ui7Op9As",  # noqa: S106 (a sample)
        token_type="Bearer",  # noqa: S106
        expires_in=ACCESS_TOKEN_SECONDS,
        refresh_token="Rt2y4U6i8O0p1A3s5D7f9G1h3J5k7L9z1X3c5V7b9Nm",  # noqa: S106
        scope=" ".join(shared),
    )
    profile = VendorProfileOut(
        sub=_SUB,
        fields={"given_name": "Ada", "email": "ada@example.org"},
        granted_fields=["given_name", "email"],
        expires_at=accepted_at + timedelta(days=30),
    )
    auth = 'curl -u "$CLIENT_ID:$CLIENT_SECRET"'
    intents_query = "?category=sports&country=NL&currency=EUR&budget_max=1000"
    offer_body = json.dumps(offer_request)
    bearer = '-H "Authorization: Bearer $TOKEN"'
    return {
        "setup": f"BASE={base}\nCLIENT_ID=<your client id>\nCLIENT_SECRET=<your client secret>",
        "token_command": (
            f'{auth} -d grant_type=client_credentials -d "scope=intents:read offers:write" '
            f"$BASE{TOKEN_PATH}"
        ),
        "token_response": _pretty(app_token.model_dump(mode="json", exclude_none=True)),
        "token_capture": (
            f"TOKEN=$({auth.replace('curl', 'curl -s')} -d grant_type=client_credentials \\\n"
            f'  -d "scope=intents:read offers:write" $BASE{TOKEN_PATH} | jq -r .access_token)'
        ),
        "intents_command": f'curl {bearer} \\\n  "$BASE{VENDOR_PREFIX}/intents{intents_query}"',
        "intents_query": intents_query,
        "intents_response": _pretty(
            IntentPage(data=[intent], next_cursor=None).model_dump(mode="json")
        ),
        "offer_command": (
            f"INTENT_ID={_IDS['intent']}\n"
            f"curl -X POST {bearer} \\\n"
            '  -H "Content-Type: application/json" \\\n'
            f"  -d '{offer_body}' \\\n"
            f'  "$BASE{VENDOR_PREFIX}/intents/$INTENT_ID/offers"'
        ),
        "offer_body": offer_body,
        "offer_response": _pretty(offer.model_dump(mode="json")),
        "offer_location": f"{VENDOR_PREFIX}/offers/{_IDS['offer']}",
        "webhook_request": (
            "POST /hooks/vrm HTTP/1.1\n"
            "Host: shop.example\n"
            "Content-Type: application/json\n"
            f"webhook-id: {_IDS['message']}\n"
            f"webhook-timestamp: {timestamp}\n"
            f"webhook-signature: {signature}\n"
            "\n"
            f"{body}"
        ),
        "webhook_body": _pretty(event),
        "webhook_id": _IDS["message"],
        "webhook_timestamp": str(timestamp),
        "webhook_signature": signature,
        "webhook_raw_body": body,
        "webhook_secret": EXAMPLE_SECRET,
        "verify_snippet": VERIFY_SNIPPET,
        "verify_usage": (
            "# raw_body: the request body as bytes; headers: a mapping with lower-case names.\n"
            "event = verify(WEBHOOK_SECRET, headers, raw_body)\n"
            'if event["type"] == "offer.accepted" and event["data"]["grant_id"]:\n'
            '    exchange_for_tokens(event["data"]["offer_id"])'
        ),
        "exchange_command": (
            f"OFFER_ID={_IDS['offer']}\n"
            f"{auth} \\\n"
            f"  -d grant_type={ACCEPTED_OFFER_GRANT} \\\n"
            f"  -d offer_id=$OFFER_ID $BASE{TOKEN_PATH}"
        ),
        "exchange_response": _pretty(user_token.model_dump(mode="json", exclude_none=True)),
        "profile_command": (
            f'curl -H "Authorization: Bearer $USER_TOKEN" $BASE{VENDOR_PREFIX}/profile'
        ),
        "profile_response": _pretty(profile.model_dump(mode="json")),
        "refresh_command": (
            f"{auth} -d grant_type=refresh_token -d refresh_token=$REFRESH_TOKEN $BASE{TOKEN_PATH}"
        ),
    }


@router.get("/vendor/docs")
def reference_page(request: Request, rt: RuntimeDep, viewer: ViewerDep) -> Response:
    """The vendor API reference, rendered from the OpenAPI document, with a worked example."""
    document = vendor_openapi(request.app, rt.settings)
    reader = Reader(document)
    return render(
        request,
        "vendor_reference.html",
        {
            "info": document["info"],
            "operations": reader.operations(),
            "webhooks": reader.operations("webhooks"),
            "schemas": reader.components(),
            "security_schemes": reader.security_schemes(),
            "errors": [(e.status, e.code, inline(e.description)) for e in error_codes(request.app)],
            "example": worked_example(rt.settings),
            "settings": rt.settings,
            "access_minutes": ACCESS_TOKEN_SECONDS // 60,
        },
    )
