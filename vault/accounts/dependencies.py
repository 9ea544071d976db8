"""Who is signed in: the session cookie resolved against server-side sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from vault.accounts.models import Account, AccountSession, Role
from vault.accounts.service import AccountService, SignedIn
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import Forbidden, NotAuthenticated
from vault.runtime import Runtime

SESSION_COOKIE = "vrm_session"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in account and its session (or nobody)."""

    account: Account | None = None
    session: AccountSession | None = None
    # Read while the database session is open: error pages render after it rolled back.
    role: str | None = None
    account_id: uuid.UUID | None = None

    @property
    def signed_in(self) -> bool:
        return self.account is not None


def client_address(request: Request, rt: Runtime) -> str:
    host = request.client.host if request.client else ""
    if host in rt.settings.trusted_proxies:
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return host[:64]


def get_viewer(request: Request, db: DbDep, rt: RuntimeDep) -> Viewer:
    cached = getattr(request.state, "viewer", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    token = request.cookies.get(rt.settings.cookie_name(SESSION_COOKIE), "")
    viewer = Viewer()
    if token:
        found = AccountService(db, rt).resolve_session(token)
        if found is not None:
            account, session = found
            viewer = Viewer(account, session, account.role, account.id)
        else:
            request.state.session_expired = True
    request.state.viewer = viewer
    return viewer


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def require_individual(viewer: ViewerDep) -> Account:
    if viewer.account is None:
        raise NotAuthenticated("Sign in first: this needs an individual's session.")
    if viewer.account.role != Role.INDIVIDUAL:
        raise Forbidden("Only individuals have a profile.")
    return viewer.account


IndividualDep = Annotated[Account, Depends(require_individual)]


def set_session_cookie(response: Response, signed_in: SignedIn, rt: Runtime) -> None:
    response.set_cookie(
        rt.settings.cookie_name(SESSION_COOKIE),
        signed_in.token,
        max_age=rt.settings.session_max_days * 86400,
        httponly=True,
        samesite="lax",
        secure=rt.settings.https,
        path="/",
    )


def clear_session_cookie(response: Response, rt: Runtime) -> None:
    response.delete_cookie(
        rt.settings.cookie_name(SESSION_COOKIE),
        httponly=True,
        samesite="lax",
        secure=rt.settings.https,
        path="/",
    )
