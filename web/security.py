"""Portal pages of account security: the second step of sign-in, sign-in with a passkey, the
authenticator app, recovery codes, passkeys, and confirming a grave step (step-up)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import Form, Header, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.orm import Session

from vault import csrf
from vault.accounts.dependencies import ViewerDep, client_address, set_session_cookie
from vault.accounts.errors import SignInThrottled
from vault.accounts.models import Account
from vault.accounts.service import AccountService
from vault.dependencies import DbDep, RuntimeDep
from vault.devices import COOKIE_MAX_AGE, DEVICE_COOKIE, signed_in_from
from vault.errors import VaultError
from vault.factors import totp
from vault.factors.dependencies import StepUp
from vault.factors.errors import PasskeyRefused, SignInStepExpired, StepUpRequired
from vault.factors.service import ISSUER, Ceremony, FactorService
from vault.profile.service import ProfileService
from vault.routing import APIRouter
from vault.runtime import Runtime
from web.dependencies import CSRFChecked, PageAccount, safe_next
from web.templating import flash, render

router = APIRouter(include_in_schema=False)

SIGNIN_STEP_COOKIE = "vrm_signin_step"
FormStr = Annotated[str, Form()]
CsrfHeader = Annotated[str | None, Header(alias="x-csrf-token")]
NOT_PROVED = "The code is not right. Use the newest code from your app, or a recovery code."


# -- helpers --------------------------------------------------------------------------------


def _home(account: Account) -> str:
    # Here rather than imported from web.accounts, which imports this module.
    return {"vendor": "/console", "auditor": "/audit"}.get(account.role, "/profile")


def _ceremony_json(ceremony: Ceremony) -> Response:
    return JSONResponse(
        {"ticket": ceremony.ticket, "options": json.loads(ceremony.options_json)},
        headers={"Cache-Control": "no-store"},
    )


def _set_step_cookie(response: Response, rt: Runtime, token: str) -> None:
    response.set_cookie(
        rt.settings.cookie_name(SIGNIN_STEP_COOKIE),
        token,
        max_age=300,
        httponly=True,
        samesite="lax",
        secure=rt.settings.https,
        path="/",
    )


def _clear_step_cookie(response: Response, rt: Runtime) -> None:
    response.delete_cookie(
        rt.settings.cookie_name(SIGNIN_STEP_COOKIE),
        httponly=True,
        samesite="lax",
        secure=rt.settings.https,
        path="/",
    )


def _step_token(request: Request, rt: Runtime) -> str:
    return request.cookies.get(rt.settings.cookie_name(SIGNIN_STEP_COOKIE), "")


def remember_device(
    request: Request, response: Response, db: Session, rt: Runtime, account: Account
) -> None:
    """A sign-in succeeded: a browser the account has not seen gets the new-device notice
    (in the sign-in's transaction), and every browser keeps (or gets) its device cookie."""
    name = rt.settings.cookie_name(DEVICE_COOKIE)
    token = signed_in_from(
        db, rt, account, request.cookies.get(name), request.headers.get("user-agent", "")
    )
    response.set_cookie(
        name,
        token,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=rt.settings.https,
        path="/",
    )


def _signed_in(
    request: Request, db: Session, rt: Runtime, account: Account, next_path: str
) -> Response:
    """Start the session (a factor was just proved with it) and go on."""
    signed = AccountService(db, rt).start_session(account)
    FactorService(db, rt).mark_checked(signed.session.id)
    response = RedirectResponse(safe_next(next_path) or _home(account), status_code=303)
    set_session_cookie(response, signed, rt)
    remember_device(request, response, db, rt, account)
    _clear_step_cookie(response, rt)
    csrf.rotate(request, session=signed.token)
    return response


def after_password(
    request: Request, db: Session, rt: Runtime, account: Account, next_path: str
) -> Response | None:
    """The password was right. With a second factor on: the half-finished sign-in and a
    redirect to its page (no session yet). Without: None, and sign-in goes on as before."""
    factors = FactorService(db, rt)
    if not factors.has_second_factor(account.id):
        return None
    token = factors.start_signin_step(account)
    target = "/signin/verify"
    if safe_next(next_path):
        target += "?next=" + quote(next_path, safe="/")
    response = RedirectResponse(target, status_code=303)
    _set_step_cookie(response, rt, token)
    return response


def _proved(
    request: Request,
    db: Session,
    rt: Runtime,
    account: Account,
    code: str,
    ticket: str,
    credential: str,
) -> bool:
    """Whether the code (TOTP or recovery) or the passkey answer proves a factor of
    ``account``. Codes count against the sign-in throttle like passwords; raises
    SignInThrottled when it is full, PasskeyRefused for a passkey answer that fails."""
    factors = FactorService(db, rt)
    if credential:
        factors.verify_passkey(ticket, credential, account.id)
        return True
    email = ProfileService(db, rt).email_of(account.id) or str(account.id)
    svc = AccountService(db, rt)
    address = client_address(request, rt)
    svc.reserve_attempt(email, address)
    if factors.check_code(account.id, code[:64]) is None:
        return False  # the reserved attempt stays counted
    svc.release_attempt(email, address)
    return True


# -- the second step of sign-in -------------------------------------------------------------


def _verify_page(
    request: Request,
    db: Session,
    rt: Runtime,
    account_id: uuid.UUID,
    next_path: str,
    errors: dict[str, str],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return _factor_page(
        request,
        db,
        rt,
        account_id,
        "signin_verify.html",
        safe_next(next_path) or "",
        errors,
        status_code,
        headers,
    )


def _factor_page(
    request: Request,
    db: Session,
    rt: Runtime,
    account_id: uuid.UUID,
    template: str,
    next_path: str,
    errors: dict[str, str],
    status_code: int,
    headers: dict[str, str] | None,
) -> Response:
    """A page asking for a second factor (sign-in's second step, or a step-up): it offers
    the factors the account has."""
    status = FactorService(db, rt).status(account_id)
    return render(
        request,
        template,
        {
            "next": next_path,
            "errors": errors,
            "has_totp": status.totp_on,
            "has_passkey": bool(status.passkeys),
        },
        status_code=status_code,
        headers=headers,
    )


def _step_expired(request: Request, rt: Runtime) -> Response:
    response = render(
        request,
        "signin.html",
        {"form": {}, "next": "", "errors": {"form": SignInStepExpired().message}},
        status_code=401,
    )
    _clear_step_cookie(response, rt)
    return response


@router.get("/signin/verify")
def signin_verify_form(request: Request, db: DbDep, rt: RuntimeDep, next: str = "") -> Response:
    try:
        step = FactorService(db, rt).signin_step(_step_token(request, rt))
    except SignInStepExpired:
        return _step_expired(request, rt)
    assert step.account_id is not None
    return _verify_page(request, db, rt, step.account_id, next, {})


@router.post("/signin/verify", dependencies=[CSRFChecked])
def signin_verify_submit(
    request: Request,
    db: DbDep,
    rt: RuntimeDep,
    code: FormStr = "",
    ticket: FormStr = "",
    credential: FormStr = "",
    next: FormStr = "",
) -> Response:
    factors = FactorService(db, rt)
    try:
        step = factors.signin_step(_step_token(request, rt))
    except SignInStepExpired:
        return _step_expired(request, rt)
    assert step.account_id is not None
    account = db.get(Account, step.account_id)
    if account is None:
        return _step_expired(request, rt)
    try:
        ok = _proved(request, db, rt, account, code, ticket, credential)
    except SignInThrottled as exc:
        return _verify_page(
            request, db, rt, account.id, next, {"form": exc.message}, 429, exc.headers
        )
    except PasskeyRefused as exc:
        return _verify_page(request, db, rt, account.id, next, {"form": exc.message}, 400)
    if not ok:
        if not factors.count_wrong_code(step):
            return _step_expired(request, rt)
        return _verify_page(request, db, rt, account.id, next, {"code": NOT_PROVED}, 400)
    try:
        factors.finish_signin_step(step)
    except SignInStepExpired:
        return _step_expired(request, rt)
    return _signed_in(request, db, rt, account, next)


@router.post("/signin/verify/passkey-options")
def signin_verify_passkey_options(
    request: Request, db: DbDep, rt: RuntimeDep, x_csrf_token: CsrfHeader = None
) -> Response:
    csrf.verify(request, rt, x_csrf_token)
    factors = FactorService(db, rt)
    step = factors.signin_step(_step_token(request, rt))
    return _ceremony_json(factors.authentication_options(step.account_id))


# -- sign-in with a passkey, no password -----------------------------------------------------


@router.post("/signin/passkey/options")
def signin_passkey_options(
    request: Request, db: DbDep, rt: RuntimeDep, x_csrf_token: CsrfHeader = None
) -> Response:
    csrf.verify(request, rt, x_csrf_token)
    return _ceremony_json(FactorService(db, rt).authentication_options(None))


@router.post("/signin/passkey", dependencies=[CSRFChecked])
def signin_passkey(
    request: Request,
    db: DbDep,
    rt: RuntimeDep,
    ticket: FormStr = "",
    credential: FormStr = "",
    next: FormStr = "",
) -> Response:
    try:
        account = FactorService(db, rt).verify_passkey(ticket, credential, None)
    except PasskeyRefused as exc:
        return render(
            request,
            "signin.html",
            {"form": {}, "next": safe_next(next) or "", "errors": {"form": exc.message}},
            status_code=400,
        )
    return _signed_in(request, db, rt, account, next)


# -- the security page -----------------------------------------------------------------------


def _security_page(
    request: Request,
    db: Session,
    rt: Runtime,
    account: Account,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "security.html",
        {"status": FactorService(db, rt).status(account.id), "errors": errors or {}},
        status_code=status_code,
    )


def _codes_page(request: Request, codes: list[str], first: bool) -> Response:
    return render(
        request,
        "recovery_codes.html",
        {"codes": codes, "first": first},
        headers={"Cache-Control": "no-store"},
    )


@router.get("/account/security")
def security_page(request: Request, account: PageAccount, db: DbDep, rt: RuntimeDep) -> Response:
    return _security_page(request, db, rt, account)


@router.post("/account/security/totp", dependencies=[CSRFChecked, StepUp])
def totp_begin(request: Request, account: PageAccount, db: DbDep, rt: RuntimeDep) -> Response:
    try:
        FactorService(db, rt).begin_totp(account)
    except VaultError as exc:
        return _security_page(request, db, rt, account, {"form": exc.message}, exc.status_code)
    return RedirectResponse("/account/security/totp", status_code=303)


def _totp_page(
    request: Request,
    db: Session,
    rt: Runtime,
    account: Account,
    secret: bytes,
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    label = ProfileService(db, rt).email_of(account.id) or "account"
    uri = totp.provisioning_uri(secret, label, ISSUER)
    return render(
        request,
        "totp_setup.html",
        {"qr": totp.qr_svg(uri), "secret": totp.base32(secret), "errors": errors},
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/account/security/totp")
def totp_setup(request: Request, account: PageAccount, db: DbDep, rt: RuntimeDep) -> Response:
    secret = FactorService(db, rt).pending_totp_secret(account.id)
    if secret is None:
        return RedirectResponse("/account/security", status_code=303)
    return _totp_page(request, db, rt, account, secret, {})


@router.post("/account/security/totp/confirm", dependencies=[CSRFChecked])
def totp_confirm(
    request: Request,
    account: PageAccount,
    viewer: ViewerDep,
    db: DbDep,
    rt: RuntimeDep,
    code: FormStr = "",
) -> Response:
    factors = FactorService(db, rt)
    try:
        codes = factors.confirm_totp(account, code[:64])
    except VaultError as exc:
        secret = factors.pending_totp_secret(account.id)
        if secret is None:
            return _security_page(request, db, rt, account, {"form": exc.message}, 409)
        return _totp_page(request, db, rt, account, secret, {"code": exc.message}, 400)
    assert viewer.session is not None
    factors.mark_checked(viewer.session.id)
    if codes:
        return _codes_page(request, codes, first=True)
    response = RedirectResponse("/account/security", status_code=303)
    flash(request, response, "Your authenticator app is on.", "success")
    return response


@router.post("/account/security/totp/off", dependencies=[CSRFChecked, StepUp])
def totp_off(request: Request, account: PageAccount, db: DbDep, rt: RuntimeDep) -> Response:
    FactorService(db, rt).turn_off_totp(account)
    response = RedirectResponse("/account/security", status_code=303)
    flash(request, response, "Your authenticator app is off.", "success")
    return response


@router.post("/account/security/recovery-codes", dependencies=[CSRFChecked, StepUp])
def recovery_codes(request: Request, account: PageAccount, db: DbDep, rt: RuntimeDep) -> Response:
    factors = FactorService(db, rt)
    if not factors.has_second_factor(account.id):
        return _security_page(
            request,
            db,
            rt,
            account,
            {"form": "Turn on an authenticator app or add a passkey first."},
            409,
        )
    return _codes_page(request, factors.new_recovery_codes(account.id), first=False)


@router.post("/account/security/passkeys/options", dependencies=[StepUp])
def passkey_options(
    request: Request,
    account: PageAccount,
    db: DbDep,
    rt: RuntimeDep,
    x_csrf_token: CsrfHeader = None,
) -> Response:
    csrf.verify(request, rt, x_csrf_token)
    name = ProfileService(db, rt).email_of(account.id) or ""
    return _ceremony_json(FactorService(db, rt).registration_options(account, name))


@router.post("/account/security/passkeys", dependencies=[CSRFChecked, StepUp])
def passkey_add(
    request: Request,
    account: PageAccount,
    viewer: ViewerDep,
    db: DbDep,
    rt: RuntimeDep,
    name: FormStr = "",
    ticket: FormStr = "",
    credential: FormStr = "",
) -> Response:
    factors = FactorService(db, rt)
    had_factor = factors.has_second_factor(account.id)
    try:
        factors.add_passkey(account, ticket, credential, name[:200])
    except VaultError as exc:
        return _security_page(request, db, rt, account, {"passkey": exc.message}, 400)
    assert viewer.session is not None
    factors.mark_checked(viewer.session.id)
    if not had_factor and not factors.recovery_left(account.id):
        return _codes_page(request, factors.new_recovery_codes(account.id), first=True)
    response = RedirectResponse("/account/security", status_code=303)
    flash(request, response, "Your passkey is added.", "success")
    return response


@router.post("/account/security/passkeys/{passkey_id}/remove", dependencies=[CSRFChecked, StepUp])
def passkey_remove(
    passkey_id: uuid.UUID, request: Request, account: PageAccount, db: DbDep, rt: RuntimeDep
) -> Response:
    if not FactorService(db, rt).remove_passkey(account, passkey_id):
        return _security_page(request, db, rt, account, {"form": "No such passkey."}, 404)
    response = RedirectResponse("/account/security", status_code=303)
    flash(request, response, "The passkey is removed.", "success")
    return response


# -- step-up ---------------------------------------------------------------------------------


def step_up_required(request: Request, exc: StepUpRequired) -> Response:
    """A grave step needs a recent factor check: pages go to the confirmation page (a form
    post is not carried out; it is made again after), the JSON API answers 403."""
    if request.url.path.startswith("/api/") or request.headers.get("x-csrf-token"):
        return JSONResponse({"error": exc.code, "detail": exc.message}, status_code=exc.status_code)
    # Back to the page of the form (browsers send no Referer here: Referrer-Policy).
    path = request.url.path
    next_path = exc.next_path or (
        "/account/security" if path.startswith("/account/security/") else path
    )
    return RedirectResponse("/account/confirm?next=" + quote(next_path, safe="/"), 303)


@router.get("/account/confirm")
def confirm_form(
    request: Request, account: PageAccount, db: DbDep, rt: RuntimeDep, next: str = ""
) -> Response:
    return _confirm_page(request, db, rt, account, next, {})


def _confirm_page(
    request: Request,
    db: Session,
    rt: Runtime,
    account: Account,
    next_path: str,
    errors: dict[str, str],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return _factor_page(
        request,
        db,
        rt,
        account.id,
        "confirm.html",
        safe_next(next_path) or "/account/security",
        errors,
        status_code,
        headers,
    )


@router.post("/account/confirm", dependencies=[CSRFChecked])
def confirm_submit(
    request: Request,
    account: PageAccount,
    viewer: ViewerDep,
    db: DbDep,
    rt: RuntimeDep,
    code: FormStr = "",
    ticket: FormStr = "",
    credential: FormStr = "",
    next: FormStr = "",
) -> Response:
    try:
        ok = _proved(request, db, rt, account, code, ticket, credential)
    except SignInThrottled as exc:
        return _confirm_page(
            request, db, rt, account, next, {"form": exc.message}, 429, exc.headers
        )
    except PasskeyRefused as exc:
        return _confirm_page(request, db, rt, account, next, {"form": exc.message}, 400)
    if not ok:
        return _confirm_page(request, db, rt, account, next, {"code": NOT_PROVED}, 400)
    assert viewer.session is not None
    FactorService(db, rt).mark_checked(viewer.session.id)
    return RedirectResponse(safe_next(next) or "/account/security", status_code=303)


@router.post("/account/confirm/passkey-options")
def confirm_passkey_options(
    request: Request,
    account: PageAccount,
    db: DbDep,
    rt: RuntimeDep,
    x_csrf_token: CsrfHeader = None,
) -> Response:
    csrf.verify(request, rt, x_csrf_token)
    return _ceremony_json(FactorService(db, rt).authentication_options(account.id))
