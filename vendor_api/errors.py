"""Errors of the vendor API: bearer-token failures as RFC 6750 describes them."""

from __future__ import annotations

from vault.errors import VaultError

REALM = "VRM Vault"


class InvalidToken(VaultError):
    """The access token is missing, unknown, expired or revoked, or its grant has ended."""

    status_code = 401
    code = "invalid_token"

    def __init__(self, message: str, *, missing: bool = False) -> None:
        # RFC 6750 section 3.1: a request with no credentials at all gets no error code.
        challenge = f'Bearer realm="{REALM}"'
        if not missing:
            challenge += ', error="invalid_token"'
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class InsufficientScope(VaultError):
    """The access token is valid but does not allow this request."""

    status_code = 403
    code = "insufficient_scope"

    def __init__(self, message: str, *, scope: str) -> None:
        challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
        super().__init__(message, headers={"WWW-Authenticate": challenge})
