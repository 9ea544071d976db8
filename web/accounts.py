"""Portal pages: sign up, sign in, sign out, account settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from vault import csrf
from vault.accounts.dependencies import (
    Viewer,
    ViewerDep,
    clear_session_cookie,
    client_address,
    set_session_cookie,
)
from vault.accounts.errors import BadCredentials, EmailNotConfirmed, SignInThrottled
from vault.accounts.models import Account, Role
from vault.accounts.service import AccountService
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import VaultError
from vault.factors.dependencies import StepUp
from vault.mail import links
from vault.mail.links import LinkUnusable
from vault.mail.notices import SWITCHABLE, queue_security_notice, set_switch, switches
from vault.profile.service import ProfileService
from vault.recovery import (
    EMAIL_CHANGE,
    check_reset_link,
    confirm_email_change,
    request_email_change,
    request_reset,
    reset_password,
)
from vault.routing import APIRouter
from vault.runtime import Runtime
from vault.signup import CONFIRM, confirm_sign_up, request_sign_up
from web.dependencies import (
    CSRFChecked,
    FormDep,
    PageAccount,
    SignInRequired,
    safe_next,
    signin_url,
)
from web.security import after_password, remember_device
from web.templating import flash, render, render_error

router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]
OptionalFormStr = Annotated[str, Form()]


def home_for(account: Account) -> str:
    if account.role == Role.VENDOR:
        return "/console"
    if account.role == Role.AUDITOR:
        return "/audit"
    return "/profile" if account.role == Role.INDIVIDUAL else "/account"


def sign_in_required(request: Request, exc: SignInRequired) -> Response:
    """A page needed a session: GET redirects to sign-in, a form post answers 401 with it."""
    rt: Runtime = request.app.state.runtime
    message = "Your session has expired. Sign in again." if exc.expired else "Sign in to continue."
    response: Response
    if request.method in ("GET", "HEAD"):
        response = RedirectResponse(signin_url(exc.next_path), status_code=303)
        if exc.expired:
            flash(request, response, message)
    else:
        response = render(
            request,
            "signin.html",
            {"form": {}, "next": "", "errors": {"form": message}},
            status_code=401,
        )
    if exc.expired:
        clear_session_cookie(response, rt)
    return response


@router.get("/")
def landing(request: Request, viewer: ViewerDep) -> Response:
    if viewer.account is not None:
        return RedirectResponse(home_for(viewer.account), status_code=303)
    return render(request, "landing.html")


@router.get("/signup")
def signup_form(request: Request, viewer: ViewerDep) -> Response:
    if viewer.account is not None:
        return RedirectResponse(home_for(viewer.account), status_code=303)
    return render(request, "signup.html", {"form": {}})


def sign_up_page(
    request: Request,
    db: Session,
    rt: Runtime,
    *,
    email: str,
    password: str,
    password_confirm: str,
    role: Role,
    template: str,
) -> Response:
    """Ask for the account (a confirmation mail goes out), or re-render ``template`` with the
    messages. The answer is the same whether or not the address already has an account."""
    errors: dict[str, str] = {}
    status = 400
    if password != password_confirm:
        errors["password_confirm"] = "The two passwords are not the same."
    else:
        try:
            request_sign_up(
                db, rt, email, password, role=role, client_address=client_address(request, rt)
            )
        except VaultError as exc:
            errors[getattr(exc, "field", None) or "form"] = exc.message
            status = exc.status_code
        else:
            return render(request, "signup_sent.html", {"vendor": role == Role.VENDOR})
    return render(
        request, template, {"form": {"email": email[:254]}, "errors": errors}, status_code=status
    )


@router.post("/signup", dependencies=[CSRFChecked])
def signup_submit(
    request: Request,
    db: DbDep,
    rt: RuntimeDep,
    email: FormStr = "",
    password: FormStr = "",
    password_confirm: FormStr = "",
) -> Response:
    return sign_up_page(
        request,
        db,
        rt,
        email=email,
        password=password,
        password_confirm=password_confirm,
        role=Role.INDIVIDUAL,
        template="signup.html",
    )


@router.get("/signup/confirm")
def signup_confirm_form(request: Request, db: DbDep, rt: RuntimeDep, t: str = "") -> Response:
    """The link in the mail shows a button: a mail scanner that fetches links uses nothing."""
    try:
        links.peek(db, rt, t, CONFIRM)
    except LinkUnusable as exc:
        return render_error(request, 400, exc.message)
    return render(
        request,
        "link_confirm.html",
        {
            "title": "Confirm your email address",
            "text": "Confirm this address to finish creating your vault.",
            "action": "/signup/confirm",
            "button": "Confirm my address",
            "token": t,
        },
    )


@router.post("/signup/confirm", dependencies=[CSRFChecked])
def signup_confirm(request: Request, db: DbDep, rt: RuntimeDep, t: FormStr = "") -> Response:
    try:
        confirm_sign_up(db, rt, t)
    except LinkUnusable as exc:
        return render_error(request, 400, exc.message)
    response = RedirectResponse("/signin", status_code=303)
    flash(
        request, response, "Your address is confirmed and your vault is ready. Sign in.", "success"
    )
    return response


@router.get("/password/forgot")
def forgot_form(request: Request) -> Response:
    return render(request, "forgot.html", {"form": {}, "errors": {}})


@router.post("/password/forgot", dependencies=[CSRFChecked])
def forgot_submit(request: Request, db: DbDep, rt: RuntimeDep, email: FormStr = "") -> Response:
    try:
        request_reset(db, rt, email, client_address=client_address(request, rt))
    except VaultError as exc:
        # Nothing was written but the counted request, which must stay (no rollback).
        return render(
            request,
            "forgot.html",
            {
                "form": {"email": email[:254]},
                "errors": {getattr(exc, "field", None) or "form": exc.message},
            },
            status_code=exc.status_code,
            headers=exc.headers,
        )
    return render(request, "forgot_sent.html")


@router.get("/password/reset")
def reset_form(request: Request, db: DbDep, rt: RuntimeDep, t: str = "") -> Response:
    try:
        check_reset_link(db, rt, t)
    except LinkUnusable as exc:
        return render_error(request, 400, exc.message)
    return render(request, "reset.html", {"token": t, "errors": {}})


@router.post("/password/reset", dependencies=[CSRFChecked])
def reset_submit(
    request: Request,
    db: DbDep,
    rt: RuntimeDep,
    t: FormStr = "",
    new_password: FormStr = "",
    new_password_confirm: FormStr = "",
) -> Response:
    errors: dict[str, str] = {}
    if new_password != new_password_confirm:
        errors["new_password_confirm"] = "The two new passwords are not the same."
    else:
        try:
            reset_password(db, rt, t, new_password)
        except LinkUnusable as exc:
            return render_error(request, 400, exc.message)
        except VaultError as exc:
            field = getattr(exc, "field", None) or "form"
            errors["new_password" if field == "password" else field] = exc.message
    if errors:
        return render(request, "reset.html", {"token": t, "errors": errors}, status_code=400)
    response = RedirectResponse("/signin", status_code=303)
    clear_session_cookie(response, rt)
    csrf.rotate(request, session=None)
    flash(
        request,
        response,
        "Your password is changed and every session was signed out. Sign in with the new one.",
        "success",
    )
    return response


@router.get("/signin")
def signin_form(request: Request, viewer: ViewerDep, next: str = "") -> Response:
    if viewer.account is not None:
        return RedirectResponse(safe_next(next) or home_for(viewer.account), status_code=303)
    return render(request, "signin.html", {"form": {}, "next": safe_next(next) or ""})


@router.post("/signin", dependencies=[CSRFChecked])
def signin_submit(
    request: Request,
    db: DbDep,
    rt: RuntimeDep,
    email: FormStr = "",
    password: FormStr = "",
    next: OptionalFormStr = "",
) -> Response:
    svc = AccountService(db, rt)
    try:
        account = svc.authenticate(email, password, client_address=client_address(request, rt))
    except (BadCredentials, EmailNotConfirmed, SignInThrottled) as exc:
        return render(
            request,
            "signin.html",
            {
                "form": {"email": email[:254]},
                "next": safe_next(next) or "",
                "errors": {"form": exc.message},
            },
            status_code=exc.status_code,
            headers=exc.headers,
        )
    second_step = after_password(request, db, rt, account, next)
    if second_step is not None:
        return second_step
    signed = svc.start_session(account)
    response = RedirectResponse(safe_next(next) or home_for(account), status_code=303)
    set_session_cookie(response, signed, rt)
    remember_device(request, response, db, rt, account)
    csrf.rotate(request, session=signed.token)
    return response


@router.post("/signout", dependencies=[CSRFChecked])
def signout(request: Request, viewer: ViewerDep, db: DbDep, rt: RuntimeDep) -> Response:
    if viewer.session is not None:
        AccountService(db, rt).end_session(viewer.session.id)
    response = RedirectResponse("/signin", status_code=303)
    clear_session_cookie(response, rt)
    csrf.rotate(request, session=None)
    flash(request, response, "You are signed out.", "success")
    return response


@router.get("/account")
def account_page(
    request: Request, account: PageAccount, viewer: ViewerDep, db: DbDep, rt: RuntimeDep
) -> Response:
    return _account_page(request, account, viewer, db, rt, {})


def _account_page(
    request: Request,
    account: Account,
    viewer: Viewer,
    db: Session,
    rt: Runtime,
    errors: dict[str, str],
    status_code: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "account.html",
        {
            "sessions": AccountService(db, rt).active_sessions(account.id),
            "current_session": viewer.session,
            "errors": errors,
            "form": form or {},
            "notice_kinds": SWITCHABLE,
            "switches": switches(db, account.id),
        },
        status_code=status_code,
    )


@router.post("/account/password", dependencies=[CSRFChecked])
def change_password(
    request: Request,
    account: PageAccount,
    viewer: ViewerDep,
    db: DbDep,
    rt: RuntimeDep,
    current_password: FormStr = "",
    new_password: FormStr = "",
    new_password_confirm: FormStr = "",
) -> Response:
    svc = AccountService(db, rt)
    errors: dict[str, str] = {}
    status = 400
    if new_password != new_password_confirm:
        errors["new_password_confirm"] = "The two new passwords are not the same."
    else:
        try:
            assert viewer.session is not None
            email = ProfileService(db, rt).email_of(account.id) or ""
            svc.change_password(
                account,
                current_password,
                new_password,
                email=email,
                keep_session=viewer.session.id,
                client_address=client_address(request, rt),
            )
        except VaultError as exc:
            # Nothing was written but the counted attempt, which must stay (no rollback).
            field = getattr(exc, "field", None) or "form"
            errors["new_password" if field == "password" else field] = exc.message
            status = exc.status_code if isinstance(exc, SignInThrottled) else 400
    if errors:
        return _account_page(request, account, viewer, db, rt, errors, status)
    queue_security_notice(db, rt, account.id, "password_changed")
    response = RedirectResponse("/account", status_code=303)
    flash(
        request,
        response,
        "Your password is changed. Every other session was signed out.",
        "success",
    )
    return response


@router.post("/account/signout-everywhere", dependencies=[CSRFChecked])
def signout_everywhere(
    request: Request, account: PageAccount, db: DbDep, rt: RuntimeDep
) -> Response:
    AccountService(db, rt).end_all_sessions(account.id)
    response = RedirectResponse("/signin", status_code=303)
    clear_session_cookie(response, rt)
    csrf.rotate(request, session=None)
    flash(request, response, "You are signed out on every device.", "success")
    return response


@router.post("/account/email", dependencies=[CSRFChecked, StepUp])
def change_email(
    request: Request,
    account: PageAccount,
    viewer: ViewerDep,
    db: DbDep,
    rt: RuntimeDep,
    new_email: FormStr = "",
    password: FormStr = "",
) -> Response:
    try:
        request_email_change(
            db, rt, account, new_email, password, client_address=client_address(request, rt)
        )
    except VaultError as exc:
        # Nothing was written but a counted wrong password, which must stay (no rollback).
        field = getattr(exc, "field", None) or "form"
        status = exc.status_code if isinstance(exc, SignInThrottled) else 400
        errors = {"email_password" if field == "password" else field: exc.message}
        return _account_page(
            request, account, viewer, db, rt, errors, status, {"new_email": new_email[:254]}
        )
    response = RedirectResponse("/account", status_code=303)
    flash(
        request,
        response,
        "We sent a link to the new address. Your sign-in address changes once you open it "
        "(within 24 hours).",
        "success",
    )
    return response


@router.get("/account/email/confirm")
def email_confirm_form(request: Request, db: DbDep, rt: RuntimeDep, t: str = "") -> Response:
    try:
        links.peek(db, rt, t, EMAIL_CHANGE)
    except LinkUnusable as exc:
        return render_error(request, 400, exc.message)
    return render(
        request,
        "link_confirm.html",
        {
            "title": "Confirm your new email address",
            "text": "Make this address the one you sign in with.",
            "action": "/account/email/confirm",
            "button": "Confirm my new address",
            "token": t,
        },
    )


@router.post("/account/email/confirm", dependencies=[CSRFChecked])
def email_confirm(
    request: Request, viewer: ViewerDep, db: DbDep, rt: RuntimeDep, t: FormStr = ""
) -> Response:
    try:
        confirm_email_change(db, rt, t)
    except VaultError as exc:
        return render_error(
            request, 400 if isinstance(exc, LinkUnusable) else exc.status_code, exc.message
        )
    response = RedirectResponse("/account" if viewer.signed_in else "/signin", status_code=303)
    flash(request, response, "Your sign-in address is changed.", "success")
    return response


@router.post("/account/notices", dependencies=[CSRFChecked])
def notice_switches(request: Request, account: PageAccount, db: DbDep, form: FormDep) -> Response:
    chosen = {value for value in form.getlist("email") if isinstance(value, str)}
    for kind in SWITCHABLE:
        set_switch(db, account.id, kind, kind in chosen)
    response = RedirectResponse("/account#notices", status_code=303)
    flash(request, response, "Your email choices are saved.", "success")
    return response
