"""Portal pages: sign up, sign in, sign out, account settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from vault import csrf
from vault.accounts.dependencies import (
    ViewerDep,
    clear_session_cookie,
    client_address,
    set_session_cookie,
)
from vault.accounts.errors import BadCredentials, SignInThrottled
from vault.accounts.models import Account, Role
from vault.accounts.service import AccountService
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import VaultError
from vault.profile.service import ProfileService
from vault.routing import APIRouter
from vault.runtime import Runtime
from vault.signup import sign_up
from web.dependencies import CSRFChecked, PageAccount, SignInRequired, safe_next, signin_url
from web.security import after_password
from web.templating import flash, render

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
    welcome: str,
) -> Response:
    """Create the account and sign it in, or re-render ``template`` with the messages."""
    errors: dict[str, str] = {}
    status = 400
    if password != password_confirm:
        errors["password_confirm"] = "The two passwords are not the same."
    else:
        svc = AccountService(db, rt)
        try:
            account = sign_up(
                db, rt, email, password, role=role, client_address=client_address(request, rt)
            )
        except VaultError as exc:
            errors[getattr(exc, "field", None) or "form"] = exc.message
            status = exc.status_code
        else:
            signed = svc.start_session(account)
            response = RedirectResponse(home_for(account), status_code=303)
            set_session_cookie(response, signed, rt)
            csrf.rotate(request, session=signed.token)
            flash(request, response, welcome, "success")
            return response
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
        welcome="Welcome! Your vault is ready. Everything you add here is encrypted with a "
        "key of your own.",
    )


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
    except (BadCredentials, SignInThrottled) as exc:
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
    sessions = AccountService(db, rt).active_sessions(account.id)
    return render(
        request,
        "account.html",
        {"sessions": sessions, "current_session": viewer.session, "errors": {}},
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
        return render(
            request,
            "account.html",
            {
                "sessions": svc.active_sessions(account.id),
                "current_session": viewer.session,
                "errors": errors,
            },
            status_code=status,
        )
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
