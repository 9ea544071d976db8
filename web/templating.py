"""Jinja2 rendering for the portal: layout context, flash messages, error pages."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from consent.terms.catalogue import INTENT_SHARING
from intents.service import waiting_offers_query
from vault import csrf
from vault.accounts.models import Role
from vault.base import utcnow
from vault.mail.notices import unread_query
from vault.runtime import Runtime

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
FLASH_COOKIE = "vrm_flash"

templates = Jinja2Templates(directory=TEMPLATE_DIR)
templates.env.globals["INTENT_SHARING"] = INTENT_SHARING  # one rule, also in the pages
templates.env.autoescape = True


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 field``, ``3 fields`` (``many`` for irregular plurals)."""
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


templates.env.filters["plural"] = plural


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _flash_mac(rt: Runtime, payload: str) -> str:
    mac = hmac.new(rt.secrets.cookie_key, b"flash\x00" + payload.encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def flash(request: Request, response: Response, message: str, kind: str = "info") -> None:
    """Show ``message`` on the next page this browser renders."""
    rt = _runtime(request)
    payload = base64.urlsafe_b64encode(json.dumps([kind, message]).encode()).decode()
    response.set_cookie(
        rt.settings.cookie_name(FLASH_COOKIE),
        f"{payload}.{_flash_mac(rt, payload)}",
        httponly=True,
        samesite="lax",
        secure=rt.settings.https,
        path="/",
        max_age=120,
    )


def _read_flash(request: Request) -> list[dict[str, str]]:
    raw = request.cookies.get(_runtime(request).settings.cookie_name(FLASH_COOKIE), "")
    payload, _, mac = raw.partition(".")
    if not payload or len(raw) > 2000:
        return []
    if not hmac.compare_digest(_flash_mac(_runtime(request), payload), mac):
        return []
    try:
        kind, message = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return []
    return [{"kind": str(kind), "message": str(message)}]


def nav_counts(request: Request, status_code: int) -> dict[str, int]:
    """The navigation's counts for a signed-in page, in one query: unread notices and (for an
    individual) offers waiting for an answer. Read with the request's session while it is
    open; a page rendered after it ended (an error page) reads them in a short session of its
    own, or goes without them when the database is the trouble."""
    viewer = getattr(request.state, "viewer", None)
    account_id = viewer.account_id if viewer is not None else None
    if account_id is None or viewer is None:
        return {}
    columns = [unread_query(account_id).scalar_subquery().label("notices")]
    if viewer.role == Role.INDIVIDUAL:
        offers = waiting_offers_query(account_id, utcnow()).scalar_subquery()
        columns.append(offers.label("offers"))
    query = select(*columns)
    db: Session | None = getattr(request.state, "db", None)
    if db is not None:
        row = db.execute(query).one()
    elif status_code >= 500:
        return {}
    else:
        try:
            with _runtime(request).sessions() as own, own.begin():
                row = own.execute(query).one()
        except SQLAlchemyError:  # an error page must still render
            return {}
    return {f"nav_{name}": int(value or 0) for name, value in row._mapping.items()}


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    rt = _runtime(request)
    viewer = getattr(request.state, "viewer", None)
    flashes = _read_flash(request)
    full = {
        "request": request,
        "viewer": viewer,
        "account": viewer.account if viewer else None,
        "csrf_token": csrf.token_for(request, rt),
        "flashes": flashes,
        **nav_counts(request, status_code),
        **(context or {}),
    }
    response = templates.TemplateResponse(
        request, template, full, status_code=status_code, headers=headers
    )
    flash_cookie = rt.settings.cookie_name(FLASH_COOKIE)
    if request.cookies.get(flash_cookie):
        response.delete_cookie(flash_cookie, path="/", secure=rt.settings.https)
    return response


_TITLES = {
    400: "Bad request",
    401: "Sign in needed",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed",
    409: "Conflict",
    413: "Too large",
    415: "Not understood",
    429: "Too many attempts",
    500: "Something went wrong",
    503: "Briefly unavailable",
}


def render_error(
    request: Request, status_code: int, detail: str, headers: dict[str, str] | None = None
) -> Response:
    return render(
        request,
        "error.html",
        {"title": _TITLES.get(status_code, "Error"), "detail": detail, "status_code": status_code},
        status_code=status_code,
        headers=headers,
    )
