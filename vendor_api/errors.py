"""Errors of the vendor API: bearer-token failures as RFC 6750 describes them, the agreement an
app must accept, and its rate limit.

Each has its own stable ``code``: the routes declare them (``error_responses``), and the
reference page's error table is generated from those declarations.
"""

from __future__ import annotations

from vault.errors import Forbidden, TooManyRequests, VaultError

REALM = "VRM Vault"


class InvalidToken(VaultError):
    """The access token is missing, unknown, expired or revoked, or its grant has ended;
    `WWW-Authenticate: Bearer` says so (RFC 6750)."""

    status_code = 401
    code = "invalid_token"

    def __init__(self, message: str, *, missing: bool = False) -> None:
        # RFC 6750 section 3.1: a request with no credentials at all gets no error code.
        challenge = f'Bearer realm="{REALM}"'
        if not missing:
            challenge += ', error="invalid_token"'
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class TokenSentTwice(VaultError):
    """The request carries its access token more than one way (in the `Authorization` header
    and in the body, or twice in the body): RFC 6750 allows one per request."""

    status_code = 400
    code = "invalid_request"

    def __init__(self, message: str) -> None:
        challenge = f'Bearer realm="{REALM}", error="invalid_request"'
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class InsufficientScope(VaultError):
    """The access token is valid but does not allow this request; `WWW-Authenticate` names
    the scope it needs."""

    status_code = 403
    code = "insufficient_scope"

    def __init__(self, message: str, *, scope: str) -> None:
        challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class AgreementRequired(Forbidden):
    """Your app does not accept the standard agreement this needs (intents and offers:
    `intent-sharing`)."""

    code = "agreement_required"


class RateLimited(TooManyRequests):
    """Your app is over its rate limit; wait `Retry-After` seconds."""

    code = "rate_limited"
