"""How vendor apps authenticate, in the vendor API's OpenAPI document: the token endpoint (no
route declares it: Authlib reads its raw form), its request and answers, and the security
schemes the operations name.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from consent import scopes
from consent.oauth.objects import grant_types_supported
from consent.oauth.tokens import ACCESS_TOKEN_SECONDS, REFRESH_TOKEN_DAYS
from intents.tokens import GRANT_TYPE as ACCEPTED_OFFER_GRANT
from vault.profile.catalogue import FIELDS
from vendor_api.openapi import component_schemas, json_content, not_null, schema_ref

TOKEN_PATH: Final = "/oauth/token"  # noqa: S105 (a path, not a secret)

# Security scheme names in components.securitySchemes.
APP_SCHEME: Final = "AppToken"
INDIVIDUAL_SCHEME: Final = "IndividualToken"
BEARER_SCHEME: Final = "AccessToken"  # the HTTPBearer of vendor_api.dependencies
BASIC_SCHEME: Final = "ClientSecretBasic"


def _grant_type_enum(schema: dict[str, Any]) -> None:
    # Evaluated when the document is built, after create_app registered the extension grant.
    schema["enum"] = grant_types_supported()


class TokenRequest(BaseModel):
    """The token request (RFC 6749), `application/x-www-form-urlencoded`. Authenticate your
    app the way it registered (`token_endpoint_auth_method`): with HTTP Basic
    (`client_secret_basic`, the default), or with `client_id` and `client_secret` in the form
    (`client_secret_post`). The other way is refused with 401 `invalid_client`."""

    grant_type: str = Field(
        json_schema_extra=_grant_type_enum,
        description="`client_credentials` for your app's own token (intents and offers); "
        "`authorization_code` and `refresh_token` for an individual's consent; "
        f"`{ACCEPTED_OFFER_GRANT}` to exchange an accepted offer for the individual's tokens.",
    )
    scope: str | None = Field(
        default=None,
        description="client_credentials: space-separated vendor scopes your app is registered "
        "for, e.g. `intents:read offers:write`.",
    )
    code: str | None = Field(
        default=None,
        description="authorization_code: the code from the redirect (single use, 60 seconds).",
    )
    redirect_uri: str | None = Field(
        default=None,
        description="authorization_code: the exact redirect URI of the authorization request.",
    )
    code_verifier: str | None = Field(
        default=None,
        description="authorization_code: the PKCE verifier of the `S256` challenge you sent.",
    )
    refresh_token: str | None = Field(
        default=None,
        description="refresh_token: your latest refresh token. The answer carries a new one; "
        "presenting an old one again revokes the whole family.",
    )
    offer_id: str | None = Field(
        default=None,
        description="accepted-offer grant: the id of your offer that the individual accepted "
        "with shared fields. Works once per offer; keep the refresh token.",
    )
    client_id: str | None = Field(default=None, description="client_secret_post only.")
    client_secret: str | None = Field(default=None, description="client_secret_post only.")


class TokenResponse(BaseModel):
    """A successful token response (RFC 6749 section 5.1), sent with `Cache-Control: no-store`."""

    access_token: str = Field(description="Opaque; send it as `Authorization: Bearer <token>`.")
    token_type: Literal["Bearer"]
    expires_in: int = Field(
        description=f"Seconds the access token lives ({ACCESS_TOKEN_SECONDS}).",
        examples=[ACCESS_TOKEN_SECONDS],
    )
    scope: str = Field(description="What the token may do, space-separated.")
    refresh_token: str | None = Field(
        default=None,
        description="Absent for client_credentials (ask again instead). Otherwise single use: "
        f"each refresh answers with a new one; unused, it lapses after {REFRESH_TOKEN_DAYS} days.",
    )
    id_token: str | None = Field(
        default=None,
        description="authorization_code with `openid`: an RS256 JWT (keys at `/oauth/jwks`).",
    )


class OAuthError(BaseModel):
    """An error of the token endpoint (RFC 6749 section 5.2)."""

    error: Literal[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ]
    error_description: str | None = Field(default=None, description="A sentence for people.")


def token_schemas() -> dict[str, Any]:
    """The component schemas of the token endpoint's form and answers."""
    described = component_schemas(
        [
            (TokenRequest, "validation"),
            (TokenResponse, "serialization"),
            (OAuthError, "serialization"),
        ]
    )
    for prop in described["TokenRequest"]["properties"].values():
        prop.update(not_null(prop))  # a form field is sent or left out, never null
        prop.pop("anyOf", None)
        if prop.get("default", "") is None:
            del prop["default"]
    return described


def token_path_item() -> dict[str, Any]:
    basic_challenge = {
        "WWW-Authenticate": {
            "description": "`Basic` with the error, when you authenticated with HTTP Basic.",
            "schema": {"type": "string"},
        }
    }
    no_store = {
        "Cache-Control": {"description": "`no-store`.", "schema": {"type": "string"}},
    }
    return {
        "post": {
            "tags": ["oauth"],
            "summary": "Get tokens",
            "description": (
                "The OAuth 2 token endpoint. `client_credentials` gives your app its own token "
                "for intents and offers (no refresh token). `authorization_code` (PKCE `S256`) "
                "and `refresh_token` (rotating) give and renew an individual's token. "
                f"`{ACCEPTED_OFFER_GRANT}` exchanges, once, an offer the individual accepted "
                "with shared fields for an access and a refresh token of that grant. Errors are "
                "RFC 6749 bodies, not the API's `{error, detail}`."
            ),
            "operationId": "oauth_token",
            "security": [{BASIC_SCHEME: []}, {}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {"schema": schema_ref("TokenRequest")}
                },
            },
            "responses": {
                "200": {
                    "description": "The tokens.",
                    "headers": no_store,
                    "content": json_content(schema_ref("TokenResponse")),
                },
                "400": {
                    "description": "`invalid_request`, `invalid_grant` (a used, expired or "
                    "unknown code, refresh token or offer), `unauthorized_client` (the grant "
                    "type is not open to your app), `unsupported_grant_type` or `invalid_scope`.",
                    "headers": no_store,
                    "content": json_content(schema_ref("OAuthError")),
                },
                "401": {
                    "description": "`invalid_client`: the client id or secret is wrong.",
                    "headers": {**basic_challenge, **no_store},
                    "content": json_content(schema_ref("OAuthError")),
                },
            },
        }
    }


def security_schemes() -> dict[str, Any]:
    """``components.securitySchemes`` but the HTTPBearer the routes declare themselves."""
    individual_scopes = {scopes.OPENID: "OpenID Connect: an id_token and /oauth/userinfo."}
    individual_scopes |= {
        scopes.PROFILE_PREFIX + key: f"Read the {spec.label.lower()} field."
        for key, spec in FIELDS.items()
    }
    return {
        APP_SCHEME: {
            "type": "oauth2",
            "description": "Your app's own token, from the client credentials grant, for "
            "intents and offers. Your app must accept the `intent-sharing` agreement.",
            "flows": {
                "clientCredentials": {"tokenUrl": TOKEN_PATH, "scopes": dict(scopes.VENDOR_SCOPES)}
            },
        },
        INDIVIDUAL_SCHEME: {
            "type": "oauth2",
            "description": "A token an individual's consent gave your app: the authorization "
            "code flow with PKCE (`S256`), or an accepted offer exchanged at the token endpoint. "
            "It reads only the fields the individual grants now.",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": "/oauth/authorize",
                    "tokenUrl": TOKEN_PATH,
                    "refreshUrl": TOKEN_PATH,
                    "scopes": individual_scopes,
                }
            },
        },
        BASIC_SCHEME: {
            "type": "http",
            "scheme": "basic",
            "description": "`client_secret_basic` (the default): your client id and secret. "
            "An app registered with `client_secret_post` sends them as `client_id` and "
            "`client_secret` form fields instead; each app only the way it registered.",
        },
    }
