"""Portal pages for intents: write and publish what you want, compare offers, accept one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from consent.grants.service import DEFAULT_DURATION, DURATIONS, GrantService
from consent.terms.catalogue import AGREEMENTS
from consent.vendors.models import VendorApp
from intents import money, taxonomy
from intents.blocks import BlockService
from intents.decisions import OfferDecisions, choose_agreement
from intents.errors import IntentClosed, OfferChanged, OfferNotLive
from intents.live import encode_event_id
from intents.models import Intent, IntentStatus
from intents.rules import (
    DEFAULT_EXPIRY_DAYS,
    MAX_DESCRIPTION,
    MAX_TITLE,
    QUICK_CLOSES,
    parse_intent,
)
from intents.service import SORTS, IntentService, IntentView
from vault.accounts.models import Account
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import InvalidInput, NotFound
from vault.profile.catalogue import FIELDS, countries
from vault.profile.service import ProfileService
from vault.routing import APIRouter
from vault.runtime import Runtime
from web.dependencies import CSRFChecked, FormDep, PageIndividual
from web.templating import flash, render

router = APIRouter(include_in_schema=False)

FORM_FIELDS = (
    "category",
    "title",
    "description",
    "quantity",
    "budget",
    "currency",
    "country",
    "city",
    "online",
    "needed_by",
    "expires_on",
    "closes",
    "closes_time",
    "time_zone",
)
STATUS_LABELS = {
    IntentStatus.DRAFT: "Draft",
    IntentStatus.OPEN: "Open",
    IntentStatus.CLOSED: "Closed (offer accepted)",
    IntentStatus.WITHDRAWN: "Withdrawn",
    IntentStatus.EXPIRED: "Expired",
}
OFFER_LABELS = {
    "live": "Waiting for your answer",
    "expired": "No longer valid",
    "accepted": "Accepted",
    "declined": "Declined",
    "lapsed": "Lapsed",
}


def _revision(form: FormData) -> int | None:
    """The offer revision the page showed (its forms carry it); None if absent or garbled."""
    raw = form.get("revision")
    if isinstance(raw, str) and raw.isdigit() and len(raw) <= 9:
        return int(raw)
    return None


def _id(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"There is no such {what}.") from None


def _form_values(form: FormData) -> dict[str, str]:
    return {name: v for name in FORM_FIELDS if isinstance(v := form.get(name, ""), str)}


def _values_of(view: IntentView) -> dict[str, str]:
    intent = view.intent
    return {
        "category": intent.category,
        "title": view.title,
        "description": view.description,
        "quantity": str(intent.quantity),
        "budget": money.format_amount(intent.budget_minor, intent.currency),
        "currency": intent.currency,
        "country": intent.country or "",
        "city": intent.city or "",
        "online": "on" if intent.online else "",
        "needed_by": intent.needed_by.isoformat() if intent.needed_by else "",
        **_closing_values(intent.expires_at),
    }


def _closing_values(expires_at: datetime) -> dict[str, str]:
    """The form's closing fields for a stored closing moment: a date alone when it closes at
    the end of a day (UTC), else the date and time in UTC."""
    moment = expires_at.astimezone(UTC)
    if moment.time() == time.min:
        return {"expires_on": (moment - timedelta(days=1)).date().isoformat(), "time_zone": "UTC"}
    return {
        "expires_on": moment.date().isoformat(),
        "closes_time": moment.strftime("%H:%M"),
        "time_zone": "UTC",
    }


def _form_errors(exc: InvalidInput) -> dict[str, str]:
    """Each message next to its field, and a summary at the top of a long form."""
    errors = dict(getattr(exc, "errors", None) or {exc.field or "form": exc.message})
    if "form" not in errors:
        n = len(errors)
        errors["form"] = (
            "One field needs your attention; it is marked below."
            if n == 1
            else f"{n} fields need your attention; each is marked below."
        )
    return errors


def _form_page(
    request: Request,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    intent: Intent | None = None,
    status_code: int = 200,
) -> Response:
    common = [c for c in money.COMMON if c in money.currencies()]
    return render(
        request,
        "intent_form.html",
        {
            "intent": intent,
            "values": values,
            "errors": errors,
            "roots": [(root, taxonomy.children(root.id)) for root in taxonomy.ROOTS],
            "common_currencies": common,
            "currencies": money.currencies(),
            "countries": countries(),
            "max_title": MAX_TITLE,
            "max_description": MAX_DESCRIPTION,
            "quick_closes": QUICK_CLOSES,
            "today": datetime.now(UTC).date().isoformat(),
        },
        status_code=status_code,
    )


def _show(request: Request, intent_id: uuid.UUID, message: str, kind: str = "success") -> Response:
    response = RedirectResponse(f"/intents/{intent_id}", status_code=303)
    flash(request, response, message, kind)
    return response


@router.get("/intents")
def intents_page(request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep) -> Response:
    views = IntentService(db, rt).mine(account.id)
    return render(
        request,
        "intents.html",
        {
            "views": views,
            "labels": STATUS_LABELS,
            "money": money.display,
        },
    )


@router.get("/intents/new")
def new_intent_form(request: Request, account: PageIndividual) -> Response:
    default_close = datetime.now(UTC).date() + timedelta(days=DEFAULT_EXPIRY_DAYS)
    values = {
        "quantity": "1",
        "currency": "EUR",
        "expires_on": default_close.isoformat(),
    }
    return _form_page(request, values, {})


@router.post("/intents/new", dependencies=[CSRFChecked])
def create_intent(
    request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep, form: FormDep
) -> Response:
    values = _form_values(form)
    publish = form.get("action") == "publish"
    try:
        intent = IntentService(db, rt).create(account, parse_intent(values), publish=publish)
    except InvalidInput as exc:
        return _form_page(request, values, _form_errors(exc), status_code=400)
    if publish:
        return _show(request, intent.id, "Your intent is published. Vendors can now answer it.")
    return _show(request, intent.id, "Saved as a draft. Vendors cannot see it until you publish.")


@router.get("/intents/blocked")
def blocked_page(request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep) -> Response:
    rows = BlockService(db, rt).blocked(account.id)
    return render(request, "intents_blocked.html", {"rows": rows})


@router.post("/intents/blocked", dependencies=[CSRFChecked])
def block_vendor(
    request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep, form: FormDep
) -> Response:
    raw = form.get("app_id", "")
    app = BlockService(db, rt).block(account, _id(raw if isinstance(raw, str) else "", "vendor"))
    response = RedirectResponse("/intents/blocked", status_code=303)
    flash(
        request,
        response,
        f"{app.name} can no longer see your intents; its open offers lapsed.",
        "success",
    )
    return response


@router.post("/intents/blocked/{app_id}/unblock", dependencies=[CSRFChecked])
def unblock_vendor(
    app_id: str, request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep
) -> Response:
    BlockService(db, rt).unblock(account, _id(app_id, "vendor"))
    response = RedirectResponse("/intents/blocked", status_code=303)
    flash(request, response, "The vendor can see your open intents again.", "success")
    return response


def _detail(
    request: Request,
    db: Session,
    rt: Runtime,
    account: Account,
    intent_id: uuid.UUID,
    sort: str,
    *,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    service = IntentService(db, rt)
    view = service.view(account.id, intent_id)
    offers = service.offers(account.id, intent_id, sort)
    blocked = {app.id for _block, app in BlockService(db, rt).blocked(account.id)}
    live_url = None
    if view.status == IntentStatus.OPEN:
        newest = max(offers, key=lambda o: (o.offer.updated_at, o.offer.id), default=None)
        after = (
            f"?after={encode_event_id(newest.offer.updated_at, newest.offer.id)}" if newest else ""
        )
        live_url = f"/intents/{intent_id}/live{after}"
    return render(
        request,
        "intent.html",
        {
            "view": view,
            "intent": view.intent,
            "offers": offers,
            "sort": sort,
            "sorts": {"price": "Price", "valid_until": "Valid longest", "received": "Newest"},
            "labels": STATUS_LABELS,
            "offer_labels": OFFER_LABELS,
            "money": money.display,
            "countries": countries(),
            "blocked": blocked,
            "errors": errors or {},
            "live_url": live_url,
        },
        status_code=status_code,
    )


@router.get("/intents/{intent_id}")
def intent_page(
    intent_id: str,
    request: Request,
    account: PageIndividual,
    db: DbDep,
    rt: RuntimeDep,
    sort: Annotated[str, Query(max_length=20)] = "price",
) -> Response:
    return _detail(
        request, db, rt, account, _id(intent_id, "intent"), sort if sort in SORTS else "price"
    )


@router.get("/intents/{intent_id}/edit")
def edit_intent_form(
    intent_id: str, request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep
) -> Response:
    view = IntentService(db, rt).view(account.id, _id(intent_id, "intent"))
    if view.status not in (IntentStatus.DRAFT, IntentStatus.OPEN):
        return _show(request, view.intent.id, "This intent is closed; it can no longer change.")
    return _form_page(request, _values_of(view), {}, intent=view.intent)


@router.post("/intents/{intent_id}/edit", dependencies=[CSRFChecked])
def edit_intent(
    intent_id: str,
    request: Request,
    account: PageIndividual,
    db: DbDep,
    rt: RuntimeDep,
    form: FormDep,
) -> Response:
    service = IntentService(db, rt)
    intent = service.owned(account.id, _id(intent_id, "intent"))
    values = _form_values(form)
    try:
        lapsed = service.update(account, intent.id, parse_intent(values))
    except InvalidInput as exc:
        return _form_page(request, values, _form_errors(exc), intent=intent, status_code=400)
    except IntentClosed as exc:
        return _show(request, intent.id, exc.message, "error")
    if lapsed:
        offers = "offer was" if lapsed == 1 else f"{lapsed} offers were"
        return _show(
            request,
            intent.id,
            f"Your changes are saved. The {offers} made for the old terms and lapsed; "
            "the vendors are told and may offer again.",
        )
    return _show(request, intent.id, "Your changes are saved.")


@router.post("/intents/{intent_id}/publish", dependencies=[CSRFChecked])
def publish_intent(
    intent_id: str, request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep
) -> Response:
    iid = _id(intent_id, "intent")
    try:
        IntentService(db, rt).publish(account, iid)
    except (InvalidInput, IntentClosed) as exc:
        return _show(request, iid, exc.message, "error")
    return _show(request, iid, "Your intent is published. Vendors can now answer it.")


@router.post("/intents/{intent_id}/withdraw", dependencies=[CSRFChecked])
def withdraw_intent(
    intent_id: str, request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep
) -> Response:
    iid = _id(intent_id, "intent")
    service = IntentService(db, rt)
    was_draft = service.owned(account.id, iid).status == IntentStatus.DRAFT
    try:
        service.withdraw(account, iid)
    except IntentClosed as exc:
        return _show(request, iid, exc.message, "error")
    if was_draft:
        response = RedirectResponse("/intents", status_code=303)
        flash(request, response, "The draft is deleted.", "success")
        return response
    return _show(request, iid, "You withdrew this intent. Vendors who made offers are told.")


def _accept_context(
    db: Session, rt: Runtime, account: Account, intent_id: uuid.UUID, offer_id: uuid.UUID
) -> dict[str, Any]:
    service = IntentService(db, rt)
    view = service.view(account.id, intent_id)
    offer = next((o for o in service.offers(account.id, intent_id) if o.offer.id == offer_id), None)
    if offer is None:
        raise NotFound("There is no such offer on this intent.")
    profile = ProfileService(db, rt).get(account.id)
    existing = GrantService(db, rt).active(account.id, offer.app.id)

    return {
        "existing": existing,
        "existing_agreement": AGREEMENTS.get(existing.agreement_id) if existing else None,
        "view": view,
        "offer": offer,
        "money": money.display,
        "agreement": choose_agreement(account, offer.app),
        "fields": [
            {"key": key, "label": spec.label, "value": profile.display(key)}
            for key, spec in FIELDS.items()
        ],
        "already": set(existing.fields) if existing else set(),
        "durations": DURATIONS,
        "duration": DEFAULT_DURATION,
        "offer_labels": OFFER_LABELS,
    }


@router.get("/intents/{intent_id}/offers/{offer_id}/accept")
def accept_form(
    intent_id: str,
    offer_id: str,
    request: Request,
    account: PageIndividual,
    db: DbDep,
    rt: RuntimeDep,
) -> Response:
    context = _accept_context(db, rt, account, _id(intent_id, "intent"), _id(offer_id, "offer"))
    return render(request, "intent_accept.html", {**context, "errors": {}})


@router.post("/intents/{intent_id}/offers/{offer_id}/accept", dependencies=[CSRFChecked])
def accept_offer(
    intent_id: str,
    offer_id: str,
    request: Request,
    account: PageIndividual,
    db: DbDep,
    rt: RuntimeDep,
    form: FormDep,
) -> Response:
    iid, oid = _id(intent_id, "intent"), _id(offer_id, "offer")
    fields = [v for v in form.getlist("share") if isinstance(v, str)]
    duration = form.get("duration", DEFAULT_DURATION)
    try:
        offer = OfferDecisions(db, rt).accept(
            account,
            iid,
            oid,
            fields=fields,
            duration=duration if isinstance(duration, str) else "",
            revision=_revision(form),
        )
    except (OfferChanged, InvalidInput) as exc:  # show the page again, with the reason
        context = _accept_context(db, rt, account, iid, oid)
        errors = {getattr(exc, "field", None) or "form": exc.message}
        return render(
            request,
            "intent_accept.html",
            {**context, "errors": errors},
            status_code=exc.status_code,
        )
    except (IntentClosed, OfferNotLive, NotFound) as exc:  # nothing left to decide
        return _show(request, iid, exc.message, "error")

    app = db.get_one(VendorApp, offer.app_id)
    if offer.shared_fields:
        labels = ", ".join(FIELDS[f].label for f in offer.shared_fields)
        message = f"You accepted {app.name}'s offer and shared: {labels}."
    else:
        message = f"You accepted {app.name}'s offer without sharing any profile field."
    return _show(request, iid, message + " The other vendors are told their offers lapsed.")


@router.post("/intents/{intent_id}/offers/{offer_id}/decline", dependencies=[CSRFChecked])
def decline_offer(
    intent_id: str,
    offer_id: str,
    request: Request,
    account: PageIndividual,
    db: DbDep,
    rt: RuntimeDep,
    form: FormDep,
) -> Response:
    iid = _id(intent_id, "intent")
    try:
        OfferDecisions(db, rt).decline(
            account, iid, _id(offer_id, "offer"), revision=_revision(form)
        )
    except (IntentClosed, OfferNotLive, OfferChanged, NotFound) as exc:
        return _show(request, iid, exc.message, "error")
    return _show(request, iid, "You declined the offer. The vendor is told.")
