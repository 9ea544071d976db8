"""Offers arriving live on the intent's page: Server-Sent Events for the intent's owner only.

``GET /intents/{id}/live`` streams ``text/event-stream``: an ``offer`` event for each offer that
arrived, changed, lapsed or was withdrawn (its card as the page renders it, or nothing when the
page no longer shows it), and a ``count`` event for the page's heading and the navigation.

How it sees offers made in another process: every stream polls the database once a second
(:data:`POLL_SECONDS`), two indexed reads in one short transaction: the session (by primary key)
and the intent's offers changed since the last event (by ``intent_id``). This works the same on
SQLite and PostgreSQL and across any number of app processes; PostgreSQL's LISTEN/NOTIFY would
save the polls but hold a connection per stream and needs a second path for SQLite, so it is
not used.

Event ids are ``<updated_at>|<offer id>`` of the newest change sent. A reconnecting browser sends
it back as ``Last-Event-ID`` (the page's first connection passes the page's own as ``after``),
and the stream sends again every offer changed since that moment less :data:`OVERLAP`: a change
whose transaction committed after a later one was sent (its ``updated_at`` is older) is still
seen. The page replaces a card by offer id, so a change sent twice is harmless.

The stream holds no more than the page: the owner's offers on this intent, never withdrawn
ones. The session is checked again on every poll (read only, so an open page does not keep an
idle session alive): at sign-out, expiry or erasure the stream says ``signed-out`` and ends.
A stream also ends after :data:`MAX_SECONDS` (the browser reconnects at once with its
``Last-Event-ID``), so a server shutting down waits for no stream for long.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from consent.terms.catalogue import AGREEMENTS
from consent.vendors.models import VendorApp
from intents import money
from intents.blocks import BlockService
from intents.live import OVERLAP, decode_event_id, encode_event_id
from intents.models import Intent, IntentStatus, Offer, OfferStatus
from intents.service import IntentService, OfferView, effective_status, offer_status
from vault import csrf
from vault.accounts.dependencies import SESSION_COOKIE
from vault.accounts.models import Account, AccountSession, AccountStatus, Role
from vault.accounts.service import AccountService
from vault.base import utcnow
from vault.errors import Forbidden, NotAuthenticated, NotFound
from vault.routing import APIRouter
from vault.runtime import Runtime
from web.intents import OFFER_LABELS
from web.templating import templates

router = APIRouter(include_in_schema=False)

POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
MAX_SECONDS = 60.0
RETRY_MS = 1000


@dataclass
class _Stream:
    """What one stream serves: the owner, their session and intent, the page's CSRF token."""

    account_id: uuid.UUID
    session_id: uuid.UUID
    intent_id: uuid.UUID
    csrf_token: str


def _open(request: Request, rt: Runtime, intent_id: str) -> _Stream:
    """Who may open the stream: the intent's owner, signed in; 401, 403 or 404 otherwise."""
    token = request.cookies.get(rt.settings.cookie_name(SESSION_COOKIE), "")
    try:
        iid = uuid.UUID(intent_id)
    except ValueError:
        raise NotFound("There is no such intent.") from None
    with rt.sessions() as db, db.begin():
        found = AccountService(db, rt).resolve_session(token) if token else None
        if found is None:
            raise NotAuthenticated("Sign in first.")
        account, session = found
        if account.role != Role.INDIVIDUAL:
            raise Forbidden("This page is for individuals; your account has another role.")
        owner = db.scalar(select(Intent.owner_id).where(Intent.id == iid))
        if owner != account.id:
            raise NotFound("There is no such intent.")
        return _Stream(account.id, session.id, iid, csrf.token_for(request, rt))


def _session_live(db: Session, rt: Runtime, stream: _Stream) -> bool:
    """The session still stands: not signed out, expired, idle, nor its account erased.
    Read only: an open page does not keep the session from going idle."""
    row = db.execute(
        select(AccountSession.expires_at, AccountSession.last_seen_at, Account.status)
        .join(Account, Account.id == AccountSession.account_id)
        .where(AccountSession.id == stream.session_id)
    ).first()
    if row is None:
        return False
    now = utcnow()
    idle = timedelta(minutes=rt.settings.session_idle_minutes)
    return bool(
        row.expires_at > now
        and row.last_seen_at + idle > now
        and row.status == AccountStatus.ACTIVE
    )


def _card(
    request: Request, stream: _Stream, intent: Intent, view: OfferView, blocked: set[uuid.UUID]
) -> str:
    return templates.get_template("_offer_card.html").render(
        request=request,
        o=view,
        intent=intent,
        money=money.display,
        offer_labels=OFFER_LABELS,
        blocked=blocked,
        csrf_token=stream.csrf_token,
    )


def _poll(
    request: Request,
    rt: Runtime,
    stream: _Stream,
    since: datetime | None,
    sent: dict[uuid.UUID, tuple[Any, ...]],
) -> tuple[bool, list[str]]:
    """One look: whether the session stands, and the events to send (already formatted)."""
    with rt.sessions() as db, db.begin():
        if not _session_live(db, rt, stream):
            return False, []
        intent = db.get(Intent, stream.intent_id)
        if intent is None or intent.owner_id != stream.account_id:
            return False, []
        query = (
            select(Offer, VendorApp)
            .join(VendorApp, VendorApp.id == Offer.app_id)
            .where(Offer.intent_id == intent.id)
            .order_by(Offer.updated_at, Offer.id)
        )
        if since is not None:
            query = query.where(Offer.updated_at > since - OVERLAP)
        rows = db.execute(query).all()
        now = utcnow()
        changed = []
        for offer, app in rows:
            signature = (offer.revision, offer.status, offer.updated_at, offer_status(offer, now))
            if sent.get(offer.id) == signature:
                continue
            sent[offer.id] = signature
            changed.append((offer, app))
        if not changed:
            return True, []
        intent_open = effective_status(intent, now) == IntentStatus.OPEN
        blocked = {app.id for _block, app in BlockService(db, rt).blocked(stream.account_id)}
        events = []
        for offer, app in changed:
            html = ""
            if offer.status != OfferStatus.WITHDRAWN:
                status = offer_status(offer, now)
                view = OfferView(
                    offer=offer,
                    app=app,
                    status=status,
                    decidable=intent_open and status == OfferStatus.LIVE,
                    agreements=[AGREEMENTS[a] for a in app.accepted_agreements if a in AGREEMENTS],
                    over_budget=offer.currency == intent.currency
                    and offer.price_minor > intent.budget_minor,
                )
                html = _card(request, stream, intent, view, blocked)
            data = {"id": str(offer.id), "html": html}
            events.append(
                f"id: {encode_event_id(offer.updated_at, offer.id)}\n"
                f"event: offer\ndata: {json.dumps(data)}\n\n"
            )
        shown = db.scalar(
            select(func.count())
            .select_from(Offer)
            .where(Offer.intent_id == intent.id, Offer.status != OfferStatus.WITHDRAWN)
        )
        waiting = IntentService(db, rt).waiting_offers(stream.account_id)
        counts = {"shown": shown or 0, "waiting": waiting or 0}
        events.append(f"event: count\ndata: {json.dumps(counts)}\n\n")
        return True, events


async def _events(
    request: Request, rt: Runtime, stream: _Stream, since: datetime | None
) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    sent: dict[uuid.UUID, tuple[Any, ...]] = {}
    started = last_write = time.monotonic()
    while True:
        live, events = await run_in_threadpool(_poll, request, rt, stream, since, sent)
        if not live:
            yield "event: signed-out\ndata: {}\n\n"
            return
        for event in events:
            yield event
            last_write = time.monotonic()
        if time.monotonic() - last_write >= KEEPALIVE_SECONDS:
            yield ": keepalive\n\n"
            last_write = time.monotonic()
        if time.monotonic() - started >= MAX_SECONDS or await request.is_disconnected():
            return
        await asyncio.sleep(POLL_SECONDS)


@router.get("/intents/{intent_id}/live")
async def offer_stream(
    intent_id: str,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)] = None,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The intent's offers as they arrive, change or lapse (Server-Sent Events)."""
    rt: Runtime = request.app.state.runtime
    stream = await run_in_threadpool(_open, request, rt, intent_id)
    since = decode_event_id(last_event_id) or decode_event_id(after)
    return StreamingResponse(
        _events(request, rt, stream, since),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
