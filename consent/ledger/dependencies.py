"""Who may read the audit API and the log's tiles: a privacy auditor, by portal session or by
API token (``Authorization: Bearer``); the tiles also anyone when ``VRM_LEDGER_PUBLIC`` is on."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vault.accounts.dependencies import get_viewer
from vault.accounts.models import Account, Role
from vault.accounts.tokens import resolve_token
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import Forbidden, NotAuthenticated

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="audit"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="audit", error="invalid_token"'}


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, "" for another scheme or an empty
    one, None when there is no such header."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def require_auditor(request: Request, db: DbDep, rt: RuntimeDep) -> Account:
    """The auditor making this request. A bearer token, when one is sent, decides alone: a
    revoked, expired or unknown one is refused even beside a valid session cookie."""
    token = bearer_token(request)
    if token is not None:
        account = resolve_token(db, rt, token) if token else None
        if account is None:
            raise NotAuthenticated(
                "This API token is unknown, expired or revoked.", headers=_INVALID
            )
        if account.role != Role.AUDITOR:  # tokens are made for auditors only; never trust it
            raise Forbidden("The audit API is for privacy auditors.")
        return account
    viewer = get_viewer(request, db, rt)
    if viewer.account is None:
        raise NotAuthenticated("Sign in with an auditor account first.", headers=_CHALLENGE)
    if viewer.role != Role.AUDITOR:
        raise Forbidden("The audit API is for privacy auditors.")
    return viewer.account


def require_log_reader(request: Request, db: DbDep, rt: RuntimeDep) -> Account | None:
    """Anyone (None) when the ledger is public, otherwise the auditor (:func:`require_auditor`)."""
    if rt.settings.ledger_public:
        return None
    return require_auditor(request, db, rt)


AuditorDep = Annotated[Account, Depends(require_auditor)]
LogReaderDep = Annotated[Account | None, Depends(require_log_reader)]
