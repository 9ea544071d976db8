"""The terms roster as pages: public agreements (HTML and JSON) and the individual's choice."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from consent.terms.catalogue import (
    AGREEMENTS,
    DEFAULT_AGREEMENT,
    agreement_for,
    set_preferred_agreement,
)
from vault.accounts.dependencies import ViewerDep
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import InvalidInput, NotFound
from vault.routing import APIRouter
from web.dependencies import CSRFChecked, FormDep, PageIndividual
from web.templating import flash, render

router = APIRouter(include_in_schema=False)


# The JSON routes come first: "/terms/{agreement_id}" would also match "x.json".
@router.get("/terms.json")
def roster_json(rt: RuntimeDep) -> Response:
    """Every agreement, machine-readable."""
    base = rt.settings.base_url
    return JSONResponse(
        {
            "default": DEFAULT_AGREEMENT,
            "agreements": [a.machine_readable(base) for a in AGREEMENTS.values()],
        }
    )


@router.get("/terms/{agreement_id}.json")
def agreement_json(agreement_id: str, rt: RuntimeDep) -> Response:
    agreement = AGREEMENTS.get(agreement_id)
    if agreement is None:
        return JSONResponse(
            {
                "error": "not_found",
                "detail": "There is no agreement with this id; see /terms.json.",
            },
            status_code=404,
        )
    return JSONResponse(agreement.machine_readable(rt.settings.base_url))


@router.get("/terms")
def roster_page(request: Request, viewer: ViewerDep) -> Response:
    return render(
        request,
        "terms_list.html",
        {"agreements": list(AGREEMENTS.values()), "default_id": DEFAULT_AGREEMENT},
    )


@router.get("/terms/{agreement_id}")
def agreement_page(agreement_id: str, request: Request, viewer: ViewerDep) -> Response:
    agreement = AGREEMENTS.get(agreement_id)
    if agreement is None:
        raise NotFound("There is no agreement with this id. See the list of standard agreements.")
    return render(request, "terms_page.html", {"agreement": agreement})


def _settings_context(chosen: str, errors: dict[str, str]) -> dict[str, object]:
    return {"agreements": list(AGREEMENTS.values()), "chosen": chosen, "errors": errors}


@router.get("/account/terms")
def terms_settings(request: Request, account: PageIndividual) -> Response:
    return render(request, "account_terms.html", _settings_context(agreement_for(account).id, {}))


@router.post("/account/terms", dependencies=[CSRFChecked])
def choose_terms(request: Request, account: PageIndividual, db: DbDep, form: FormDep) -> Response:
    try:
        agreement = set_preferred_agreement(account, form.get("agreement"))
    except InvalidInput as exc:
        return render(
            request,
            "account_terms.html",
            _settings_context(agreement_for(account).id, {"agreement": exc.message}),
            status_code=400,
        )
    db.flush()
    response = RedirectResponse("/account/terms", status_code=303)
    flash(
        request,
        response,
        f"Saved. You now offer vendors “{agreement.title}”.",
        "success",
    )
    return response
