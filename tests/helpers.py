"""Helpers that act as a browser would: fetch a form, read its CSRF token, submit it.

They take any httpx client: a ``TestClient`` on the app, or an ``httpx.Client`` on a served
process (``tests/served.py``)."""

from __future__ import annotations

import asyncio
import contextvars
import re
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

from httpx import Client, Response

from tests.mail import last_queued, link_to, token_of
from vault.runtime import Runtime

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def page_csrf(client: Client, path: str = "/signin") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return csrf_from(response.text)


def post_form(
    client: Client, path: str, data: dict[str, object], form_page: str | None = None
) -> Response:
    token = page_csrf(client, form_page or path)
    return client.post(path, data={**data, "csrf_token": token})


def unique_email(prefix: str = "person") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.org"


def sign_up(
    client: Client,
    email: str | None = None,
    password: str = PASSWORD,
    *,
    rt: Runtime | None = None,
    home: str = "/profile",
) -> str:
    """Sign up, confirm the address from the mail the vault queued, and sign in: a usable,
    confirmed account, signed in on ``client``. ``rt``: a runtime on the served database
    (default: the TestClient's app's)."""
    email = email or unique_email()
    response = post_form(
        client, "/signup", {"email": email, "password": password, "password_confirm": password}
    )
    assert response.status_code == 200, response.text
    assert "Check your email" in response.text
    confirm_address(client, email, rt=rt)
    signed_in = sign_in(client, email, password)
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == home
    return email


def confirm_address(client: Client, email: str, *, rt: Runtime | None = None) -> None:
    """Use the confirmation link last queued to ``email``, as its owner would."""
    runtime = rt or client.app.state.runtime  # type: ignore[attr-defined]
    link = urlsplit(link_to(last_queued(runtime, email, "confirm_signup"), "/signup/confirm"))
    page = f"{link.path}?{link.query}"
    response = post_form(client, "/signup/confirm", {"t": token_of(page)}, form_page=page)
    assert response.status_code == 303, response.text


def sign_in(client: Client, email: str, password: str = PASSWORD) -> Response:
    return post_form(client, "/signin", {"email": email, "password": password})


def api_headers(client: Client) -> dict[str, str]:
    """The X-CSRF-Token header the JSON API wants, read from a page as a browser script would."""
    return {"X-CSRF-Token": page_csrf(client, "/profile")}


T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own: the test's thread may already run a loop (the
    browser tests' Playwright keeps one in each xdist worker that ran them)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        # With this thread's context: the pins a test set are what the coroutine must see.
        return pool.submit(contextvars.copy_context().run, asyncio.run, coroutine).result()
