"""CSRF protection: a signed double-submit token, bound to the session (OWASP's HMAC-based
double submit with the session).

A random value lives in an HttpOnly, SameSite=Lax cookie; every state-changing form carries
HMAC(cookie key, session cookie + value) in a hidden field (or the ``X-CSRF-Token`` header for
the JSON API). A cross-site page can neither read the cookies nor compute the HMAC. Binding
the session in: an attacker who can plant cookies in the victim's browser (a sibling
subdomain, plain HTTP before HSTS) can plant a CSRF cookie whose token they got from this
site, but the token was made for their session (or none), not the victim's, so it fails.
Before sign-in there is no session and the token is bound to the CSRF cookie alone. The value
is replaced at sign-in and sign-out, so a token from before either no longer works.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from fastapi import Request

from vault.accounts.dependencies import SESSION_COOKIE
from vault.errors import Forbidden
from vault.runtime import Runtime

CSRF_COOKIE = "vrm_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class CSRFError(Forbidden):
    """The form or request lacks a valid CSRF token."""

    code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__(
            "This form has expired or did not come from this site. Reload the page and try again."
        )


def _sign(rt: Runtime, session: str, value: str) -> str:
    # Neither cookie value can hold a NUL (HTTP headers cannot), so the message is unambiguous.
    message = b"csrf\x00" + session.encode() + b"\x00" + value.encode()
    mac = hmac.new(rt.secrets.cookie_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _browser_session(request: Request, rt: Runtime) -> str:
    return request.cookies.get(rt.settings.cookie_name(SESSION_COOKIE), "")


def cookie_value(request: Request) -> str:
    """The CSRF cookie value for this request, minting one when the browser has none."""
    value = getattr(request.state, "csrf_cookie", None)
    if value is None:
        rt: Runtime = request.app.state.runtime
        value = request.cookies.get(rt.settings.cookie_name(CSRF_COOKIE))
        if not value or len(value) > 100:
            value = secrets.token_urlsafe(32)
            request.state.csrf_new = True
        request.state.csrf_cookie = value
    return str(value)


def token_for(request: Request, rt: Runtime) -> str:
    """The token for the next request's cookies: this response's if it sets new ones."""
    session = getattr(request.state, "csrf_session", None)
    if session is None:
        session = _browser_session(request, rt)
    return _sign(rt, str(session), cookie_value(request))


def rotate(request: Request, *, session: str | None) -> None:
    """A new CSRF cookie with the response that signs in or out; ``session`` is the session
    cookie that response sets (None when it clears it), which tokens made from now on in this
    request are bound to."""
    request.state.csrf_cookie = secrets.token_urlsafe(32)
    request.state.csrf_new = True
    request.state.csrf_session = session or ""


def verify(request: Request, rt: Runtime, submitted: str | None) -> None:
    cookie = request.cookies.get(rt.settings.cookie_name(CSRF_COOKIE))
    if not cookie or not submitted or len(submitted) > 100:
        raise CSRFError()
    if not hmac.compare_digest(_sign(rt, _browser_session(request, rt), cookie), submitted):
        raise CSRFError()
