"""The app factory: mounts every package's router, registers the extension grants and the
error handlers, and wires the parts of export, import and erasure into ``app.state``."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import secrets
import traceback
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from consent.grants.recorder import AccessRecorder
from consent.ledger.endpoints import router as audit_router
from consent.ledger.service import ledger_key, origin_problem
from consent.ledger.tile_endpoints import router as audit_log_router
from consent.oauth.endpoints import router as consent_router
from consent.oauth.endpoints import token_router
from consent.oauth.objects import register_extension_grant
from consent.oauth.oidc import signing_key
from consent.oauth.registration import router as registration_router
from consent.vendors.ratelimit import limiter_for
from intents.tokens import AcceptedOfferGrant
from vault import csrf
from vault.db import is_outage, ping
from vault.errors import ServiceUnavailable, VaultError
from vault.factors.errors import StepUpRequired
from vault.keys import KeyManagementError
from vault.keystore import KeySweeper
from vault.metrics import MetricsMiddleware
from vault.middleware import (
    BodyLimitMiddleware,
    ResponseHeadersMiddleware,
    security_headers,
    wants_json,
)
from vault.pgasync import OUTAGES, AsyncPostgres
from vault.profile.endpoints import router as profile_router
from vault.resp import RedisUnavailable
from vault.routing import UnicodeRoute
from vault.runtime import Runtime
from vault.settings import Settings, SettingsError, get_settings
from vendor_api.docs import allowed_methods, api_openapi
from vendor_api.docs import router as vendor_docs_router
from vendor_api.endpoints import router as vendor_router
from vendor_api.intents import router as vendor_intents_router
from vendor_api.subscriptions import router as vendor_subscriptions_router
from vendor_api.userinfo import router as userinfo_router
from vrm.metrics import router as metrics_router
from vrm.wiring import portability
from web.accounts import sign_in_required
from web.api_reference import router as api_reference_router
from web.dependencies import SignInRequired
from web.endpoints import router as web_router
from web.security import step_up_required
from web.templating import STATIC_DIR, render_error
from web.vendor_reference import router as vendor_reference_router

log = logging.getLogger("vrm")

_STATUS_TEXT = {
    400: ("bad_request", "The request could not be understood."),
    401: ("not_authenticated", "Sign in first."),
    403: ("forbidden", "You may not do this."),
    404: ("not_found", "There is nothing here."),
    405: ("method_not_allowed", "This address does not accept that method."),
    413: ("payload_too_large", "The request is too large."),
    500: (
        "server_error",
        "Something went wrong on our side. Nothing you entered was lost "
        "from your saved data; please try again.",
    ),
}


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
READY_TIMEOUT = 3.0
"""Seconds ``/readyz`` waits for the database and the key store together."""


def request_id(request: Request) -> str:
    """The proxy's ``X-Request-ID`` when it sent a sane one, else a new one: named in the log
    line and the response of a failed request, so the two can be matched. Made only for
    failures (a successful request pays nothing)."""
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _validation_sentence(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        if error.get("type") == "json_invalid":  # the decoder's reason, and where it stopped
            reason = (error.get("ctx") or {}).get("error", "not valid JSON")
            pos = (error.get("loc") or (0,))[-1]
            at = f" at character {pos}" if isinstance(pos, int) and pos > 0 else ""
            parts.append(f"body: {reason.removesuffix(' at')}{at}")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",)) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "The request is not valid. " + "; ".join(parts) + "."


YOUNG_OBJECTS = 50_000
"""Objects a server process may gain before the collector looks at the young ones (Python's
default: 700). A request makes and drops hundreds of objects, so at 700 the collector ran
every few requests. Measured with ``bench/http.py --workers 1`` (2026-12-07, after
:func:`settle_heap`'s freeze): the profile read 0.130 of the floor at 700, 0.171 to 0.188 at
7,000 to 50,000; tokens 1,729/s at 700, 1,898 to 2,016 at 7,000 to 10,000, 2,221 to 2,293 at
50,000."""


def settle_heap() -> None:
    """Tune the garbage collector for a server process that has started: everything it
    allocated so far (modules, routes, compiled statements, the catalogues of countries and
    phone numbers: about 220,000 objects that live as long as the process) moved out of the
    collector's sight (``gc.freeze``, after one collection), and the young objects collected
    every :data:`YOUNG_OBJECTS` instead of every 700.

    Every full collection walked those 220,000 objects: 120 to 140 ms with the event loop
    stopped, every few hundred requests (6.0 s of one 36 s benchmark run), and the p99 of every
    vendor request (``bench/http.py --workers 1``, 2026-12-07: the profile read's p99 162 ms
    at 32 connections before, 27 ms after; 1,346 reads/s before, 1,776 after). Objects made
    afterwards are collected as before; a cycle of them waits at most a little longer.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, middle, old)


def serve_app() -> FastAPI:
    """The app as ``vrm serve`` runs it in each server process: :func:`create_app`, its heap
    settled (:func:`settle_heap`) once it has started."""
    return create_app(settle=True)


def create_app(
    settings: Settings | None = None, runtime: Runtime | None = None, *, settle: bool = False
) -> FastAPI:
    """The app; ``settle``: :func:`settle_heap` once it has started (for a server process: a
    test process would keep every object its tests made so far)."""
    settings = settings or (runtime.settings if runtime else get_settings())
    runtime = runtime or Runtime.from_settings(settings)

    recorder = AccessRecorder(runtime.sessions, settings.access_log_batch_ms / 1000)
    sweeper = KeySweeper(runtime.sessions, settings.key_cache_sweep_seconds)

    limiter = limiter_for(settings, runtime.engine)
    # The profile read runs in the event loop on connections of its own (PostgreSQL only).
    hot_pg = AsyncPostgres.for_sessions(runtime.sessions)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        recorder.start()
        sweeper.start()
        if settle:
            settle_heap()
        try:
            yield
        finally:
            recorder.stop()  # on SIGTERM too: every queued read is written before exit
            sweeper.stop()
            await limiter.aclose()
            if hot_pg is not None:
                await hot_pg.close()

    app = FastAPI(
        lifespan=lifespan,
        title="VRM Vault",
        summary="A customer-owned personal data vault.",
        version="0.1.0",
        docs_url=None,  # web.api_reference serves /api/docs from the service itself
        redoc_url=None,
        openapi_url="/api/openapi.json",
        # The vault's metrics are its own (Prometheus, vrm.metrics); FastAPI's OpenTelemetry
        # bridge, with no provider configured, still asked for its three providers on every
        # request (each a look-up in os.environ): 7% of a token request's CPU (py-spy).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.route_class = UnicodeRoute  # as every package's APIRouter
    app.openapi = lambda: api_openapi(app, settings)  # type: ignore[method-assign]
    app.state.runtime = runtime
    app.state.portability = portability(runtime)
    app.state.rate_limiter = limiter
    app.state.hot_pg = hot_pg
    app.state.access_recorder = recorder
    app.state.key_sweeper = sweeper
    register_extension_grant(AcceptedOfferGrant)
    # Production refuses to start without operator-made signing keys (id_tokens, checkpoints).
    try:
        signing_key(runtime)
        ledger = ledger_key(runtime)
    except KeyManagementError as exc:
        raise SettingsError(str(exc)) from exc
    # The audit API publishes the log's stored origin whatever the settings; signing refuses.
    problem = origin_problem(runtime, ledger)
    if problem is not None:
        log.warning("%s Receipts, exports and checkpoints fail until this is fixed.", problem)

    def error_response(
        request: Request,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> Response:
        if wants_json(request.url.path):
            # A vendor API call counted against its rate limit says so on errors too.
            counted = getattr(request.state, "rate_limit_headers", None) or {}
            return JSONResponse(
                {"error": code, "detail": detail, **(extra or {})},
                status_code=status,
                headers={**counted, **(headers or {})},
            )
        return render_error(request, status, detail, headers=headers)

    @app.exception_handler(VaultError)
    async def vault_error(request: Request, exc: VaultError) -> Response:
        body = exc.body()
        extra = {k: v for k, v in body.items() if k not in ("error", "detail")}
        return error_response(request, exc.status_code, exc.code, exc.message, exc.headers, extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if wants_json(request.url.path):
            return JSONResponse(
                {"error": "validation_error", "detail": _validation_sentence(exc)}, status_code=422
            )
        return render_error(
            request, 400, "The form was not filled in as expected. Go back and try again."
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code, detail = _STATUS_TEXT.get(exc.status_code, ("error", "The request failed."))
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # every method the path takes, not the first route's
            allowed = allowed_methods(request.app, request.url.path)
            headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed))}
        return error_response(request, exc.status_code, code, detail, headers)

    app.add_exception_handler(SignInRequired, sign_in_required)  # type: ignore[arg-type]
    app.add_exception_handler(StepUpRequired, step_up_required)  # type: ignore[arg-type]

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        rid = request_id(request)
        # Type and frames only: exception messages can carry bound SQL parameters.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error(
            "unhandled %s on %s %s (request %s)\n%s",
            type(exc).__name__,
            request.method,
            request.url.path,
            rid,
            frames,
            extra={"request_id": rid},
        )
        code, detail = _STATUS_TEXT[500]
        response = error_response(request, 500, code, detail, {"X-Request-ID": rid})
        # Starlette sends this from outside every middleware: add their headers here.
        for name, value in security_headers(https=settings.https):
            response.headers.setdefault(name.decode(), value.decode())
        response.headers["cache-control"] = "no-store"
        return response

    async def database_error(request: Request, exc: Exception) -> Response:
        """The database or Redis is away (down, restarting, unreachable): 503 with ``Retry-After``
        and one log line naming the request, not a traceback per request; any other
        database error is a 500 as above. Handled inside the middleware (so the response
        carries its headers) and not raised on to the server, which would log it again."""
        if not is_outage(exc):
            return await server_error(request, exc)
        rid = request_id(request)
        log.warning(
            "%s unavailable (%s) on %s %s (request %s): answered 503",
            "Redis" if isinstance(exc, RedisUnavailable | redis.RedisError) else "database",
            type(exc).__name__,
            request.method,
            request.url.path,
            rid,
            extra={"request_id": rid},
        )
        unavailable = ServiceUnavailable()
        return error_response(
            request,
            unavailable.status_code,
            unavailable.code,
            unavailable.message,
            {**(unavailable.headers or {}), "X-Request-ID": rid},
        )

    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeout, database_error)
    # The event loop's connections, and Redis's from the threads (rate limits).
    for outage in (*OUTAGES, RedisUnavailable, redis.ConnectionError, redis.TimeoutError):
        app.add_exception_handler(outage, database_error)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (no database work)."""
        return {"status": "ok"}

    def ready_problems() -> dict[str, str]:
        """What keeps this process from serving: the database (a ``SELECT 1``) and the key
        store (a key wrapped and unwrapped under the current key-encryption key). Blocking."""
        problems: dict[str, str] = {}
        try:
            ping(runtime.engine, timeout=READY_TIMEOUT - 1)
        except Exception as exc:  # the type only: messages can name hosts and parameters
            problems["database"] = type(exc).__name__
        try:
            probe = secrets.token_bytes(32)
            if runtime.keys.unwrap(runtime.keys.wrap(probe, b"readyz"), b"readyz") != probe:
                problems["keys"] = "mismatch"
        except Exception as exc:
            problems["keys"] = type(exc).__name__
        return problems

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"description": "The database or the key store is not usable."}},
    )
    async def readyz() -> Response:
        """Readiness: the database answers a ``SELECT 1`` and the key store is usable, within
        a few seconds. 503 (with ``Retry-After``) otherwise: take the process out of the
        load balancer until it is ready again."""
        try:
            problems = await asyncio.wait_for(asyncio.to_thread(ready_problems), READY_TIMEOUT)
        except TimeoutError:
            problems = {"database": "timeout"}
        if not problems:
            return JSONResponse({"status": "ok"})
        log.warning("not ready: %s", ", ".join(f"{k} {v}" for k, v in problems.items()))
        unavailable = ServiceUnavailable("Not ready: " + ", ".join(sorted(problems)) + ".")
        return JSONResponse(
            {"error": unavailable.code, "detail": unavailable.message, "checks": problems},
            status_code=unavailable.status_code,
            headers=unavailable.headers,
        )

    # The vendor API and the token endpoint first (the profile read, then tokens): routes
    # are matched in order, and theirs are the requests that come by the thousand. Then the
    # audit API and the log's tiles, which auditors' scripts call by the thousand too:
    # matched after the web pages' routes, a proof spent a quarter of its CPU time in route
    # matching (py-spy, `bench/ledger.py --scenario scale --http --py-spy DIR`). Their paths
    # (/api/audit/v1/...) are their own.
    for router in (
        vendor_router,
        token_router,
        vendor_intents_router,
        vendor_subscriptions_router,
        consent_router,
        userinfo_router,
        registration_router,
        audit_router,
        audit_log_router,
        web_router,
        profile_router,
        vendor_docs_router,
        vendor_reference_router,
        api_reference_router,
        metrics_router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    app.add_middleware(
        ResponseHeadersMiddleware,
        https=settings.https,
        csrf_cookie=settings.cookie_name(csrf.CSRF_COOKIE),
    )
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        paths={"/signup/import": settings.max_import_bytes},
    )
    app.add_middleware(MetricsMiddleware)  # outermost: refused bodies are counted too
    return app
