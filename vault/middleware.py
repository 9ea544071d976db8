"""ASGI middleware: request body limit and security headers."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vault.errors import PayloadTooLarge

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)


def wants_json(path: str) -> bool:
    if path.startswith("/oauth/authorize"):
        return False  # the consent screen is a page
    return path.startswith(("/api/", "/vendor/", "/oauth/", "/.well-known/"))


class BodyTooLarge(PayloadTooLarge):
    """Raised into the app when a streamed body passes the limit."""

    def __init__(self) -> None:
        super().__init__("The request is too large.")


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413, whether declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int, paths: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = limit
        self.paths = paths or {}
        """Exact paths with a limit of their own (an archive upload)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body: nothing to count
            return
        limit = self.paths.get(scope["path"], self.default)
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = True
            if too_big:
                await self._refuse(scope, send, limit)
                return
        received = 0
        started = False
        exceeded = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started, refused
            if message["type"] == "http.response.start" and exceeded and not started:
                # The app caught BodyTooLarge and answered on its own (FastAPI turns a failed
                # JSON body read into 400): answer 413 instead.
                refused = True
            if message["type"] == "http.response.start":
                started = True
            if refused:
                if message["type"] == "http.response.start":
                    await self._refuse(scope, send, limit)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send, limit)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        detail = f"The request body is larger than the limit of {limit // 1024} KiB."
        if wants_json(scope["path"]):
            body = json.dumps({"error": "payload_too_large", "detail": detail}).encode()
            ctype = b"application/json"
        else:
            body = (
                "<!doctype html><html lang=en><meta charset=utf-8><title>Too large</title>"
                f"<h1>Request too large</h1><p>{detail}</p></html>"
            ).encode()
            ctype = b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", ctype),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    (b"cache-control", b"no-store"),
                    *security_headers(https=False),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def security_headers(*, https: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    ]
    if https:
        headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    return headers


class ResponseHeadersMiddleware:
    """On every response: a strict CSP and the usual security headers, no caching of personal
    pages, and the CSRF cookie when the request minted or rotated one. One send wrapper for
    all three, since every request pays for it."""

    def __init__(self, app: ASGIApp, *, https: bool, csrf_cookie: str = "vrm_csrf") -> None:
        self.app = app
        self.headers = security_headers(https=https)
        self.names = {name for name, _ in self.headers} | {b"cache-control"}
        self.csrf_cookie = csrf_cookie
        self.secure = "; Secure" if https else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers} & self.names
                headers += [h for h in self.headers if h[0] not in present]
                if b"cache-control" not in present and not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                state = scope.get("state")
                if state and state.get("csrf_new"):
                    cookie = f"{self.csrf_cookie}={state['csrf_cookie']}; HttpOnly; Path=/"
                    cookie += f"; SameSite=Lax{self.secure}"
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
