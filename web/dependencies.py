"""Page dependencies: CSRF on every state-changing form, sign-in required."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from starlette.datastructures import FormData

from vault import csrf
from vault.accounts.dependencies import ViewerDep
from vault.accounts.models import Account, Role
from vault.dependencies import RuntimeDep
from vault.errors import Forbidden, NotAuthenticated

MAX_FORM_FIELDS = 100


class SignInRequired(NotAuthenticated):
    """A page needs a signed-in account; GET redirects, a form post answers 401."""

    def __init__(self, next_path: str, expired: bool) -> None:
        super().__init__("Sign in first.")
        self.next_path = next_path
        self.expired = expired


async def verify_form_csrf(request: Request, rt: RuntimeDep) -> None:
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    token = form.get(csrf.CSRF_FIELD)
    csrf.verify(request, rt, token if isinstance(token, str) else None)


CSRFChecked = Depends(verify_form_csrf)


def _require(request: Request, viewer: ViewerDep) -> Account:
    if viewer.account is None:
        path = request.url.path
        raise SignInRequired(
            path if request.method == "GET" else "",
            getattr(request.state, "session_expired", False),
        )
    return viewer.account


def require_account(request: Request, viewer: ViewerDep) -> Account:
    return _require(request, viewer)


def require_individual(request: Request, viewer: ViewerDep) -> Account:
    account = _require(request, viewer)
    if account.role != Role.INDIVIDUAL:
        raise Forbidden("This page is for individuals; your account has another role.")
    return account


PageAccount = Annotated[Account, Depends(require_account)]
PageIndividual = Annotated[Account, Depends(require_individual)]


def signin_url(next_path: str) -> str:
    return "/signin" + (f"?next={quote(next_path, safe='/')}" if next_path else "")


def safe_next(value: str | None) -> str | None:
    """Only same-site relative paths; never ``//host`` or a scheme."""
    if not value or len(value) > 4000 or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(c) < 32 for c in value):
        return None
    return value


async def read_form(request: Request) -> FormData:
    """The submitted form (parsed once, cached on the request), for sync endpoints."""
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


FormDep = Annotated[FormData, Depends(read_form)]
