"""The vendors' developer console: sign up as a vendor, register and manage apps."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from consent.grants.service import delete_app
from consent.scopes import VENDOR_SCOPES
from consent.vendors.models import VendorApp
from consent.vendors.service import (
    AppInput,
    InvalidApp,
    agreements,
    app_of_owner,
    apps_of,
    create_client_secret,
    register_app,
    update_app,
)
from consent.webhooks.log import delivery_log, endpoint_health
from consent.webhooks.outbox import resend, retry_now
from consent.webhooks.signing import rotate_webhook_secret, webhook_secret_for
from intents import taxonomy
from intents.subscriptions import MAX_PER_APP, Subscriptions
from vault.accounts.dependencies import ViewerDep
from vault.accounts.models import Account, Role
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import Forbidden, InvalidInput, NotFound
from vault.routing import APIRouter
from vault.runtime import Runtime
from vendor_api.subscriptions import SubscriptionIn, parse_subscription, subscription_out
from web.accounts import home_for, sign_up_page
from web.dependencies import CSRFChecked, FormDep, require_account
from web.templating import flash, render

router = APIRouter(include_in_schema=False)


def require_vendor(request: Request, viewer: ViewerDep) -> Account:
    account = require_account(request, viewer)
    if account.role != Role.VENDOR:
        raise Forbidden("The developer console is for vendor accounts.")
    return account


PageVendor = Annotated[Account, Depends(require_vendor)]


# -- vendor sign-up -----------------------------------------------------------------------


def _text(form: FormData, name: str, limit: int = 5000) -> str:
    value = form.get(name, "")
    return value[:limit] if isinstance(value, str) else ""


@router.get("/signup/vendor")
def vendor_signup_form(request: Request, viewer: ViewerDep) -> Response:
    if viewer.account is not None:
        return RedirectResponse(home_for(viewer.account), status_code=303)
    return render(request, "signup_vendor.html", {"form": {}, "errors": {}})


@router.post("/signup/vendor", dependencies=[CSRFChecked])
def vendor_signup_submit(request: Request, db: DbDep, rt: RuntimeDep, form: FormDep) -> Response:
    return sign_up_page(
        request,
        db,
        rt,
        email=_text(form, "email", 300),
        password=_text(form, "password", 300),
        password_confirm=_text(form, "password_confirm", 300),
        role=Role.VENDOR,
        template="signup_vendor.html",
    )


# -- apps ---------------------------------------------------------------------------------


def _app_input(form: FormData) -> AppInput:
    redirect_text = _text(form, "redirect_uris", 20_000)
    webhook = _text(form, "webhook_url", 1000).strip()
    return AppInput(
        name=_text(form, "name", 1000),
        homepage_url=_text(form, "homepage_url", 1000),
        privacy_policy_url=_text(form, "privacy_policy_url", 1000),
        redirect_uris=[line.strip() for line in redirect_text.splitlines()],
        purpose=_text(form, "purpose", 5000),
        accepted_agreements=[v for v in form.getlist("accepted_agreements") if isinstance(v, str)],
        webhook_url=webhook or None,
        vendor_scopes=[v for v in form.getlist("vendor_scopes") if isinstance(v, str)],
    )


def _form_values(form: FormData) -> dict[str, Any]:
    return {
        "name": _text(form, "name", 1000),
        "homepage_url": _text(form, "homepage_url", 1000),
        "privacy_policy_url": _text(form, "privacy_policy_url", 1000),
        "redirect_uris": _text(form, "redirect_uris", 20_000),
        "purpose": _text(form, "purpose", 5000),
        "webhook_url": _text(form, "webhook_url", 1000),
        "accepted_agreements": [
            v for v in form.getlist("accepted_agreements") if isinstance(v, str)
        ],
        "vendor_scopes": [v for v in form.getlist("vendor_scopes") if isinstance(v, str)],
    }


def _app_values(app: VendorApp) -> dict[str, Any]:
    return {
        "name": app.name,
        "homepage_url": app.homepage_url,
        "privacy_policy_url": app.privacy_policy_url,
        "redirect_uris": "\n".join(app.redirect_uris),
        "purpose": app.purpose,
        "webhook_url": app.webhook_url or "",
        "accepted_agreements": list(app.accepted_agreements),
        "vendor_scopes": list(app.vendor_scopes),
    }


def _form_page(
    request: Request,
    app: VendorApp | None,
    values: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "console_app_form.html",
        {
            "app": app,
            "form": values,
            "errors": errors,
            "agreements": agreements(),
            "vendor_scopes": VENDOR_SCOPES,
        },
        status_code=status_code,
    )


def _deliveries(rt: Runtime, db: Session, app: VendorApp) -> dict[str, Any]:
    """The app's webhook delivery log, its endpoint's health and the signing secret."""
    return {
        "log": list(delivery_log(db, app.id)),
        "health": endpoint_health(db, app.id),
        "signing_secret": webhook_secret_for(rt, app),
        "can_rotate": True,
    }


def _app_page(
    request: Request,
    rt: Runtime,
    db: Session,
    app: VendorApp,
    *,
    new_secret: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "console_app.html",
        {
            "app": app,
            "new_secret": new_secret,
            "agreements": agreements(),
            "vendor_scopes": VENDOR_SCOPES,
            "webhooks": _deliveries(rt, db, app),
            "subscriptions": [
                subscription_out(sub, app.webhook_url) for sub in Subscriptions(db, app).all()
            ],
            "subscription_limit": MAX_PER_APP,
            "category_roots": [(root, taxonomy.children(root.id)) for root in taxonomy.ROOTS],
        },
        status_code=status_code,
    )


@router.get("/console")
def console_home(request: Request, vendor: PageVendor, db: DbDep) -> Response:
    return render(request, "console.html", {"apps": apps_of(db, vendor.id)})


@router.get("/console/apps/new")
def new_app_form(request: Request, vendor: PageVendor) -> Response:
    return _form_page(request, None, {"accepted_agreements": [], "vendor_scopes": []}, {})


@router.post("/console/apps", dependencies=[CSRFChecked])
def register_app_submit(
    request: Request, vendor: PageVendor, db: DbDep, rt: RuntimeDep, form: FormDep
) -> Response:
    try:
        app, _ = register_app(db, rt, _app_input(form), owner_id=vendor.id)
    except InvalidApp as exc:
        return _form_page(request, None, _form_values(form), exc.errors, 400)
    response = RedirectResponse(f"/console/apps/{app.id}", status_code=303)
    flash(
        request,
        response,
        f"{app.name} is registered. Create a client secret to start using it.",
        "success",
    )
    return response


@router.get("/console/apps/{app_id}")
def app_page(
    app_id: str, request: Request, vendor: PageVendor, db: DbDep, rt: RuntimeDep
) -> Response:
    return _app_page(request, rt, db, app_of_owner(db, vendor.id, app_id))


@router.get("/console/apps/{app_id}/edit")
def edit_app_form(app_id: str, request: Request, vendor: PageVendor, db: DbDep) -> Response:
    app = app_of_owner(db, vendor.id, app_id)
    return _form_page(request, app, _app_values(app), {})


@router.post("/console/apps/{app_id}", dependencies=[CSRFChecked])
def save_app(
    app_id: str, request: Request, vendor: PageVendor, db: DbDep, form: FormDep
) -> Response:
    app = app_of_owner(db, vendor.id, app_id)
    try:
        update_app(db, app, _app_input(form))
    except InvalidApp as exc:
        return _form_page(request, app, _form_values(form), exc.errors, 400)
    response = RedirectResponse(f"/console/apps/{app.id}", status_code=303)
    flash(request, response, f"{app.name} is saved.", "success")
    return response


@router.post("/console/apps/{app_id}/secret", dependencies=[CSRFChecked])
def new_secret(
    app_id: str, request: Request, vendor: PageVendor, db: DbDep, rt: RuntimeDep
) -> Response:
    """Create or rotate the client secret and show it on this response only (never again)."""
    app = app_of_owner(db, vendor.id, app_id)
    secret = create_client_secret(db, rt, app)
    return _app_page(request, rt, db, app, new_secret=secret)


@router.post("/console/apps/{app_id}/webhook-secret", dependencies=[CSRFChecked])
def rotate_signing_secret(app_id: str, request: Request, vendor: PageVendor, db: DbDep) -> Response:
    """Replace the webhook signing secret (derived, so the page can show it again)."""
    app = app_of_owner(db, vendor.id, app_id)
    rotate_webhook_secret(db, app)
    response = RedirectResponse(f"/console/apps/{app.id}", status_code=303)
    flash(
        request,
        response,
        "The webhook signing secret is replaced. Messages from now on are signed with the new one.",
        "success",
    )
    return response


@router.post("/console/apps/{app_id}/webhooks/{message_id}/resend", dependencies=[CSRFChecked])
def resend_webhook(
    app_id: str, message_id: str, request: Request, vendor: PageVendor, db: DbDep
) -> Response:
    """Queue a delivered or given-up message again, after the app's waiting messages."""
    app = app_of_owner(db, vendor.id, app_id)
    copy = resend(db, app, message_id)
    response = RedirectResponse(f"/console/apps/{app.id}", status_code=303)
    flash(
        request,
        response,
        f"The {copy.event_type} message is queued again, after any message already waiting, "
        "with a new webhook-id.",
        "success",
    )
    return response


@router.post("/console/apps/{app_id}/webhooks/retry", dependencies=[CSRFChecked])
def retry_webhooks_now(app_id: str, request: Request, vendor: PageVendor, db: DbDep) -> Response:
    """The endpoint is back: try the waiting messages at the worker's next pass, in order."""
    app = app_of_owner(db, vendor.id, app_id)
    waiting = retry_now(db, app)
    response = RedirectResponse(f"/console/apps/{app.id}", status_code=303)
    flash(
        request,
        response,
        f"{waiting} waiting message{'s' if waiting != 1 else ''} will be tried at the worker's "
        "next pass, in the order they were queued."
        if waiting
        else "No message is waiting.",
        "success",
    )
    return response


@router.get("/console/apps/{app_id}/delete")
def delete_app_form(app_id: str, request: Request, vendor: PageVendor, db: DbDep) -> Response:
    app = app_of_owner(db, vendor.id, app_id)
    return render(request, "console_app_delete.html", {"app": app, "errors": {}})


@router.post("/console/apps/{app_id}/delete", dependencies=[CSRFChecked])
def delete_app_submit(
    app_id: str, request: Request, vendor: PageVendor, db: DbDep, rt: RuntimeDep, form: FormDep
) -> Response:
    app = app_of_owner(db, vendor.id, app_id)
    if form.get("confirm") != "yes":
        return render(
            request,
            "console_app_delete.html",
            {"app": app, "errors": {"confirm": "Tick the box to confirm the deletion."}},
            status_code=400,
        )
    name = app.name
    delete_app(db, app, rt)
    response = RedirectResponse("/console", status_code=303)
    flash(request, response, f"{name} is deleted, with every grant and token it held.", "success")
    return response


_SUBSCRIPTION_FIELDS = ("category", "country", "city", "currency", "budget_min", "budget_max")


@router.post("/console/apps/{app_id}/subscriptions", dependencies=[CSRFChecked])
def add_subscription(
    app_id: str, request: Request, vendor: PageVendor, db: DbDep, form: FormDep
) -> Response:
    """Save an intent subscription for the app (the same filters and checks as the API's)."""
    app = app_of_owner(db, vendor.id, app_id)
    values: dict[str, Any] = {
        name: value.strip() or None
        for name in _SUBSCRIPTION_FIELDS
        if isinstance(value := form.get(name, ""), str)
    }
    values["online"] = True if form.get("online") == "on" else None
    response = RedirectResponse(f"/console/apps/{app.id}#subscriptions", status_code=303)
    try:
        Subscriptions(db, app).create(parse_subscription(SubscriptionIn(**values)))
    except ValidationError:
        flash(request, response, "Not saved: a value is too long.", "error")
        return response
    except InvalidInput as exc:
        problems = getattr(exc, "errors", None) or {exc.field or "form": exc.message}
        flash(request, response, "Not saved: " + " ".join(problems.values()), "error")
        return response
    flash(
        request, response, "Subscription saved: matching intents go to your webhook URL.", "success"
    )
    return response


@router.post(
    "/console/apps/{app_id}/subscriptions/{subscription_id}/delete", dependencies=[CSRFChecked]
)
def remove_subscription(
    app_id: str, subscription_id: str, request: Request, vendor: PageVendor, db: DbDep
) -> Response:
    app = app_of_owner(db, vendor.id, app_id)
    try:
        key = uuid.UUID(subscription_id)
    except ValueError:
        raise NotFound("Your app has no subscription with this id.") from None
    Subscriptions(db, app).delete(key)
    response = RedirectResponse(f"/console/apps/{app.id}#subscriptions", status_code=303)
    flash(request, response, "Subscription deleted.", "success")
    return response
