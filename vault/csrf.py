"""CSRF protection: a signed double-submit token.

A random value lives in an HttpOnly, SameSite=Lax cookie; every state-changing form carries
HMAC(cookie key, value) in a hidden field (or the ``X-CSRF-Token`` header for the JSON API).
A cross-site page can neither read the cookie nor compute the HMAC. The value is replaced at
sign-in and sign-out, so a token from before either no longer works.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from fastapi import Request

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


def _sign(rt: Runtime, value: str) -> str:
    mac = hmac.new(rt.secrets.cookie_key, b"csrf\x00" + value.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


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
    return _sign(rt, cookie_value(request))


def rotate(request: Request) -> None:
    request.state.csrf_cookie = secrets.token_urlsafe(32)
    request.state.csrf_new = True


def verify(request: Request, rt: Runtime, submitted: str | None) -> None:
    cookie = request.cookies.get(rt.settings.cookie_name(CSRF_COOKIE))
    if not cookie or not submitted or len(submitted) > 100:
        raise CSRFError()
    if not hmac.compare_digest(_sign(rt, cookie), submitted):
        raise CSRFError()
