"""A vendor app and Authlib's own OAuth client, talking to the app through TestClient."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from consent.vendors.service import AppInput, register_app
from tests.helpers import csrf_from
from vault.runtime import Runtime

REDIRECT_URI = "https://shop.example/callback"


@dataclass
class Vendor:
    app: VendorApp
    secret: str

    @property
    def client_id(self) -> str:
        return self.app.client_id


def make_vendor(
    db: Session,
    rt: Runtime,
    *,
    name: str = "Example Shop",
    agreements: tuple[str, ...] = ("service-only", "no-tracking"),
    vendor_scopes: tuple[str, ...] = (),
    webhook_url: str | None = None,
    auth_method: str = "client_secret_basic",
) -> Vendor:
    app, secret = register_app(
        db,
        rt,
        AppInput(
            name=name,
            homepage_url="https://shop.example",
            privacy_policy_url="https://shop.example/privacy",
            redirect_uris=[REDIRECT_URI],
            purpose="Deliver your orders to your door.",
            accepted_agreements=list(agreements),
            vendor_scopes=list(vendor_scopes),
            webhook_url=webhook_url,
            token_endpoint_auth_method=auth_method,
        ),
        owner_id=None,
        registered_via="cli",
        with_secret=True,
    )
    db.commit()
    assert secret is not None
    return Vendor(app, secret)


def oauth_client(
    client: TestClient, vendor: Vendor, scope: str, auth_method: str = "client_secret_basic"
) -> OAuth2Client:
    """Authlib's client, its HTTP going through the same app as ``client``."""
    return OAuth2Client(
        client_id=vendor.client_id,
        client_secret=vendor.secret,
        scope=scope,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
        transport=client._transport,
        base_url="http://testserver",
    )


def authorize_url(oauth: OAuth2Client, verifier: str, **extra: str) -> tuple[str, str]:
    url, state = oauth.create_authorization_url(
        "http://testserver/oauth/authorize", code_verifier=verifier, **extra
    )
    return url, state


def new_verifier() -> str:
    return generate_token(48)


def consent(
    browser: TestClient,
    url: str,
    *,
    fields: list[str] | None = None,
    decision: str = "allow",
    duration: str = "30d",
    agreement: str | None = None,
) -> str:
    """Open the consent page as the signed-in individual and answer it; returns Location."""
    page = browser.get(url)
    assert page.status_code == 200, page.text
    data = hidden_fields(page.text)
    data["decision"] = decision
    data["duration"] = duration
    if agreement is not None:
        data["agreement"] = agreement
    form_fields = fields if fields is not None else ticked_fields(page.text)
    response = browser.post("/oauth/authorize", data={**data, "field": form_fields})  # type: ignore[dict-item]
    assert response.status_code == 302, response.text
    return response.headers["location"]


def hidden_fields(html: str) -> dict[str, str]:
    import re

    found = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    found["csrf_token"] = csrf_from(html)
    checked = re.search(r'name="agreement" value="([^"]+)" checked', html)
    if checked:
        found["agreement"] = checked.group(1)
    import html as html_lib

    return {k: html_lib.unescape(v) for k, v in found.items()}


def ticked_fields(html: str) -> list[str]:
    import re

    return re.findall(r'name="field" value="([^"]+)" checked', html)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
