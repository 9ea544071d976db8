"""The consent screen: ``/oauth/authorize``, where an individual decides what a vendor may read."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from consent import scopes
from consent.grants.service import (
    CONSENT_SCREEN,
    DEFAULT_DURATION,
    DURATIONS,
    Decision,
    GrantService,
    pairwise_subject,
    screen_text_hash,
)
from consent.oauth.endpoints import FormPairs, to_response, vault_request
from consent.oauth.objects import ConsentedUser
from consent.oauth.server import VaultAuthorizationServer
from consent.terms.catalogue import AGREEMENTS, agreement_for
from vault.accounts.dependencies import Viewer, ViewerDep
from vault.accounts.models import Account, Role
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import InvalidInput
from vault.middleware import CSP
from vault.profile.catalogue import FIELDS
from vault.profile.service import ProfileService
from vault.routing import APIRouter
from vault.runtime import Runtime
from web.dependencies import CSRFChecked, signin_url
from web.templating import render, render_error

router = APIRouter(include_in_schema=False)

# The parameters of the authorization request, carried through the consent form.
OAUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
)


def _refuse(
    request: Request, server: VaultAuthorizationServer, oreq: Any, error: OAuth2Error
) -> Response:
    """Redirect the error to the client only when its redirect URI was verified."""
    if getattr(error, "redirect_uri", None):
        return to_response(server.handle_error_response(oreq, error))
    detail = error.description or error.error
    return render_error(request, 400, f"This sign-in request from an app is not valid: {detail}")


def _silent_refusal(error: type[OAuth2Error], grant: Any) -> OAuth2Error:
    """``prompt=none``'s answer when a page would be needed, sent to the verified redirect URI."""
    return error(state=grant.request.payload.state, redirect_uri=grant.redirect_uri)


def _agreements(account: Account, app_agreements: list[str]) -> dict[str, Any]:

    preferred = agreement_for(account)
    offered = [AGREEMENTS[a] for a in app_agreements if a in AGREEMENTS]
    return {
        "preferred": preferred,
        "accepted": preferred.id in app_agreements,
        "offered": offered,
        "selected": preferred.id
        if preferred.id in app_agreements
        else (offered[0].id if offered else ""),
    }


def _page(
    request: Request,
    rt: Runtime,
    db: Any,
    account: Account,
    grant: Any,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    app = grant.request.client.app
    requested = scopes.fields_in(grant.request.scope)
    existing = GrantService(db, rt).active(account.id, app.id)
    already = set(existing.fields) if existing else set()
    profile = ProfileService(db, rt).get(account.id)
    rows = [
        {
            "key": key,
            "label": FIELDS[key].label,
            "value": profile.display(key),
            "already": key in already,
        }
        for key in requested
    ]
    params = {name: grant.request.payload.data.get(name) for name in OAUTH_PARAMS}
    redirect_origin = "{0.scheme}://{0.netloc}".format(urlsplit(params["redirect_uri"] or ""))
    csp = CSP.replace("form-action 'self'", f"form-action 'self' {redirect_origin}")
    return render(
        request,
        "consent.html",
        {
            "app": app,
            "rows": rows,
            "new_count": sum(1 for r in rows if not r["already"]),
            "openid": scopes.OPENID in scopes.split(grant.request.scope),
            "params": {k: v for k, v in params.items() if v is not None},
            "terms": _agreements(account, app.accepted_agreements),
            "durations": DURATIONS,
            "duration": DEFAULT_DURATION,
            "existing": existing,
            "errors": errors or {},
        },
        status_code=status_code,
        headers={"content-security-policy": csp},
    )


def consent_text_hash(app: Any, requested: list[str], agreement_id: str) -> str:
    """SHA-256 of what the consent screen stated (see :func:`screen_text_hash`)."""
    return screen_text_hash(CONSENT_SCREEN, app, requested, agreement_id)


def _issue(
    server: VaultAuthorizationServer,
    oreq: Any,
    grant: Any,
    rt: Runtime,
    grant_row: Any,
    viewer: Viewer,
) -> Response:
    assert viewer.session is not None
    user = ConsentedUser(
        grant_row.individual_id,
        pairwise_subject(rt, grant_row.app_id, grant_row.individual_id),
        grant_row,
        auth_time=viewer.session.created_at,  # when the person signed in (OIDC auth_time)
    )
    return to_response(server.create_authorization_response(oreq, grant_user=user, grant=grant))


def _prompts(oreq: Any) -> set[str]:
    return set((oreq.payload.data.get("prompt") or "").split())


@router.get("/oauth/authorize")
def authorize(request: Request, viewer: ViewerDep, db: DbDep, rt: RuntimeDep) -> Response:
    """The consent screen, or its answer at once when nothing new is asked.

    ``prompt=none`` (OpenID Connect Core 3.1.2.6, honoured for plain OAuth requests too) never
    shows a page: without a signed-in individual it is ``login_required``, with one who has
    not consented to all that is asked ``consent_required``, both at the redirect URI.
    """
    server = VaultAuthorizationServer(db, rt)
    oreq = vault_request(request, rt, [])
    person = viewer.account if viewer.role == Role.INDIVIDUAL else None
    try:
        grant = server.get_consent_grant(oreq, end_user=person)
    except OAuth2Error as error:
        return _refuse(request, server, oreq, error)
    prompts = _prompts(oreq)
    if person is None and "none" in prompts:
        return _refuse(request, server, oreq, _silent_refusal(LoginRequiredError, grant))
    if viewer.account is None:
        return RedirectResponse(
            signin_url(request.url.path + "?" + request.url.query), status_code=303
        )
    if person is None:
        return render_error(
            request,
            403,
            "Only individuals can share their data with apps. Sign in with your personal account.",
        )
    app = grant.request.client.app
    existing = GrantService(db, rt).active(person.id, app.id)
    requested = scopes.fields_in(grant.request.scope)
    unchanged_terms = existing is not None and (
        existing.purpose == app.purpose and existing.agreement_id in app.accepted_agreements
    )
    if (
        existing is not None
        and unchanged_terms
        and set(requested) <= set(existing.fields)
        and "consent" not in prompts
    ):
        # Incremental consent: nothing new is asked, so nothing is asked.
        return _issue(server, oreq, grant, rt, existing, viewer)
    if "none" in prompts:
        return _refuse(request, server, oreq, _silent_refusal(ConsentRequiredError, grant))
    return _page(request, rt, db, person, grant)


@router.post("/oauth/authorize", dependencies=[CSRFChecked])
def decide(
    request: Request, form: FormPairs, viewer: ViewerDep, db: DbDep, rt: RuntimeDep
) -> Response:
    server = VaultAuthorizationServer(db, rt)
    oauth_pairs = [(k, v) for k, v in form if k in OAUTH_PARAMS]
    oreq = vault_request(request, rt, oauth_pairs)
    try:
        grant = server.get_consent_grant(oreq, end_user=None)
    except OAuth2Error as error:
        return _refuse(request, server, oreq, error)
    if viewer.account is None or viewer.role != Role.INDIVIDUAL:
        return render_error(
            request, 401, "Your session has ended, so nothing was shared. Start again from the app."
        )
    account = viewer.account
    choice = dict(form)
    if choice.get("decision") != "allow":
        return to_response(server.create_authorization_response(oreq, grant_user=None, grant=grant))
    app = grant.request.client.app
    requested = scopes.fields_in(grant.request.scope)
    ticked = {v for k, v in form if k == "field"}
    service = GrantService(db, rt)
    existing = service.active(account.id, app.id)
    kept = [f for f in (existing.fields if existing else []) if f not in requested]
    fields = [f for f in requested if f in ticked] + kept
    agreement = choice.get("agreement", "")
    if agreement not in app.accepted_agreements:
        return _page(
            request,
            rt,
            db,
            account,
            grant,
            {"agreement": "Choose one of the agreements this app accepts."},
            400,
        )
    try:
        row = service.decide(
            account.id,
            app,
            Decision(fields, choice.get("duration", "")),
            agreement,
            consent_text_hash=consent_text_hash(app, requested, agreement),
        )
    except InvalidInput as exc:
        return _page(request, rt, db, account, grant, {exc.field or "form": exc.message}, 400)
    return _issue(server, oreq, grant, rt, row, viewer)
