"""Connections: the vendors an individual lets read their data, what each read, and undoing it."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from consent.grants.access import (
    access_log,
    access_summary,
    deleted_app_reads,
    deleted_apps_log,
    ended_at,
    ended_grants,
    owned_grant,
)
from consent.grants.models import Grant
from consent.grants.portability import previous_vendors
from consent.grants.receipts import MEDIA_TYPE, ReceiptPending, receipt_for
from consent.grants.service import GrantService, is_active
from consent.terms.catalogue import AGREEMENTS, agreement_for
from consent.vendors.models import VendorApp
from vault.accounts.models import Account
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import NotFound
from vault.profile.catalogue import FIELDS
from vault.routing import APIRouter
from vault.runtime import Runtime
from web.dependencies import CSRFChecked, FormDep, PageIndividual
from web.templating import flash, render

router = APIRouter(include_in_schema=False)

LOG_PAGE_SIZE = 50


def field_label(key: str) -> str:
    spec = FIELDS.get(key)
    return spec.label if spec else key


def web_link(url: str | None) -> str | None:
    """Only http(s) addresses become links; anything else is shown as text or not at all."""
    if not url:
        return None
    return url if urlsplit(url).scheme in ("http", "https") else None


def _grant_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("There is no such connection.") from None


def _connections_context(
    db: Session, rt: Runtime, account: Account, errors: dict[str, str]
) -> dict[str, Any]:
    summary = access_summary(db, account.id)
    preferred = agreement_for(account)
    rows = []
    for grant, app in GrantService(db, rt).for_individual(account.id):
        reads = summary.get(app.id)
        rows.append(
            {
                "grant": grant,
                "app": app,
                "homepage": web_link(app.homepage_url),
                "privacy_policy": web_link(app.privacy_policy_url),
                "fields": [(key, field_label(key)) for key in grant.fields],
                "agreement": AGREEMENTS.get(grant.agreement_id),
                "reads": reads.reads if reads else 0,
                "last_read_at": reads.last_read_at if reads else None,
            }
        )
    ended = [
        {"grant": grant, "app": app, "ended_at": ended_at(grant)}
        for grant, app in ended_grants(db, account.id)
    ]

    return {
        "rows": rows,
        "ended": ended,
        "deleted_apps": deleted_app_reads(db, account.id),
        "preferred": preferred,
        "errors": errors,
        "previous": [
            {**v, "fields": [field_label(k) for k in v.get("fields") or []]}
            for v in previous_vendors(db, rt, account.id)
        ],
    }


@router.get("/connections")
def connections_page(
    request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep
) -> Response:
    return render(request, "connections.html", _connections_context(db, rt, account, {}))


def _ended(request: Request, app: VendorApp) -> Response:
    response = RedirectResponse("/connections", status_code=303)
    flash(request, response, f"{app.name} had no access any more: nothing changed.")
    return response


@router.post("/connections/{grant_id}/revoke", dependencies=[CSRFChecked])
def revoke(
    grant_id: str, request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep
) -> Response:
    grant, app = owned_grant(db, account.id, _grant_id(grant_id))
    if not is_active(grant):
        return _ended(request, app)
    GrantService(db, rt).revoke(account.id, grant.id)
    response = RedirectResponse("/connections", status_code=303)
    flash(
        request,
        response,
        f"You revoked {app.name}'s access. It can no longer read any of your data.",
        "success",
    )
    return response


@router.post("/connections/{grant_id}/narrow", dependencies=[CSRFChecked])
def narrow(
    grant_id: str,
    request: Request,
    account: PageIndividual,
    db: DbDep,
    rt: RuntimeDep,
    form: FormDep,
) -> Response:
    grant, app = owned_grant(db, account.id, _grant_id(grant_id))
    if not is_active(grant):
        return _ended(request, app)
    ticked = {value for value in form.getlist("remove") if isinstance(value, str)}
    remove = [key for key in grant.fields if key in ticked]
    if not remove:
        errors = {str(grant.id): f"Tick the fields {app.name} should no longer read."}
        return render(
            request,
            "connections.html",
            _connections_context(db, rt, account, errors),
            status_code=400,
        )
    after: Grant = GrantService(db, rt).narrow(account.id, grant.id, remove)
    response = RedirectResponse("/connections", status_code=303)
    if after.revoked_at is not None:
        message = f"{app.name} can no longer read any of your data: its access is revoked."
    else:
        labels = ", ".join(field_label(key) for key in remove)
        message = f"{app.name} can no longer read: {labels}."
    flash(request, response, message, "success")
    return response


@router.get("/connections/{grant_id}/receipt")
def receipt_download(
    request: Request, grant_id: str, account: PageIndividual, db: DbDep, rt: RuntimeDep
) -> Response:
    """The signed consent receipt of the connection's latest event (a compact JWS file); back
    to the connections page with a note while that event is still pending in the ledger."""

    grant, _app = owned_grant(db, account.id, _grant_id(grant_id))
    try:
        signed = receipt_for(db, rt, grant.id)["receipt"]
    except ReceiptPending:
        response = RedirectResponse("/connections", status_code=303)
        flash(
            request,
            response,
            "Your latest change to this connection is being added to the consent ledger; "
            "its receipt is ready in a second or two. Please try again.",
            "info",
        )
        return response
    return Response(
        signed + "\n",
        media_type=MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="receipt-{grant.id}.jws"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/connections/deleted-apps")
def deleted_apps_page(
    request: Request,
    account: PageIndividual,
    db: DbDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """The reads by apps their vendors deleted since: the individual's record outlives them."""
    entries = deleted_apps_log(
        db, account.id, limit=LOG_PAGE_SIZE + 1, offset=(page - 1) * LOG_PAGE_SIZE
    )
    return render(
        request,
        "deleted_apps_log.html",
        {
            "entries": [
                {
                    "at": e.accessed_at,
                    "app_name": e.app_name,
                    "fields": [field_label(k) for k in e.fields],
                }
                for e in entries[:LOG_PAGE_SIZE]
            ],
            "total": sum(app.reads for app in deleted_app_reads(db, account.id)),
            "page": page,
            "has_older": len(entries) > LOG_PAGE_SIZE,
        },
    )


@router.get("/connections/{grant_id}/log")
def log_page(
    grant_id: str,
    request: Request,
    account: PageIndividual,
    db: DbDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    grant, app = owned_grant(db, account.id, _grant_id(grant_id))
    entries = access_log(
        db, account.id, app.id, limit=LOG_PAGE_SIZE + 1, offset=(page - 1) * LOG_PAGE_SIZE
    )
    reads = access_summary(db, account.id).get(app.id)
    return render(
        request,
        "connection_log.html",
        {
            "grant": grant,
            "app": app,
            "active": is_active(grant),
            "entries": [
                {"at": e.accessed_at, "fields": [field_label(k) for k in e.fields]}
                for e in entries[:LOG_PAGE_SIZE]
            ],
            "total": reads.reads if reads else 0,
            "page": page,
            "has_older": len(entries) > LOG_PAGE_SIZE,
        },
    )
