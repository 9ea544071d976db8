"""Portal pages: the profile, viewed and edited field by field."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData

from vault.accounts.dependencies import ViewerDep
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import InvalidInput, VaultError
from vault.factors.dependencies import check_step_up
from vault.profile.catalogue import (
    CLOTHING_SIZES,
    CUSTOM_PREFIX,
    SHOE_SYSTEMS,
    STANDARD_FIELDS,
    choices_for,
    countries,
)
from vault.profile.service import ProfileService
from vault.routing import APIRouter
from web.dependencies import CSRFChecked, FormDep, PageIndividual
from web.templating import flash, render

router = APIRouter(include_in_schema=False)


@router.get("/profile")
def profile_page(request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep) -> Response:
    profile = ProfileService(db, rt).get(account.id)
    rows = [{"spec": spec, "display": profile.display(spec.key)} for spec in STANDARD_FIELDS]
    return render(request, "profile.html", {"rows": rows, "custom": profile.custom})


def _edit_context(key: str, value: Any, errors: dict[str, str]) -> dict[str, Any]:
    spec = ProfileService.spec(key)
    return {
        "spec": spec,
        "value": value,
        "errors": errors,
        "choices": choices_for(spec),
        "countries": countries(),
        "shoe_systems": list(SHOE_SYSTEMS),
        "clothing_sizes": CLOTHING_SIZES,
    }


@router.get("/profile/fields/{key}")
def edit_field_form(
    key: str,
    request: Request,
    account: PageIndividual,
    viewer: ViewerDep,
    db: DbDep,
    rt: RuntimeDep,
) -> Response:
    if key.startswith(CUSTOM_PREFIX):
        return RedirectResponse(f"/profile/custom/{key}", status_code=303)
    if key == "email":  # the sign-in address changes only through a confirmation mail
        return RedirectResponse("/account#change-email", status_code=303)
    value = ProfileService(db, rt).get(account.id).values.get(key)
    return render(request, "field_edit.html", _edit_context(key, value, {}))


@router.post("/profile/fields/{key}", dependencies=[CSRFChecked])
def save_field(
    key: str,
    request: Request,
    account: PageIndividual,
    viewer: ViewerDep,
    db: DbDep,
    rt: RuntimeDep,
    form: FormDep,
) -> Response:
    if key == "email":
        check_step_up(db, rt, viewer)
    spec = ProfileService.spec(key)
    flat: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    flat["values"] = [v for v in form.getlist("values") if isinstance(v, str)]
    raw = spec.from_form(flat)
    try:
        ProfileService(db, rt).set_field(account, key, raw)
    except InvalidInput as exc:
        return render(
            request,
            "field_edit.html",
            _edit_context(key, raw, {exc.field or key: exc.message}),
            status_code=400,
        )
    except VaultError as exc:
        return render(
            request,
            "field_edit.html",
            _edit_context(key, raw, {key: exc.message}),
            status_code=exc.status_code,
        )
    response = RedirectResponse("/profile", status_code=303)
    flash(request, response, f"{spec.label} saved.", "success")
    return response


@router.post("/profile/fields/{key}/clear", dependencies=[CSRFChecked])
def clear_field(
    key: str, request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep
) -> Response:
    service = ProfileService(db, rt)
    label = (
        service.custom(account.id, key).label
        if key.startswith(CUSTOM_PREFIX)
        else (service.spec(key).label)
    )
    try:
        service.clear_field(account, key)
    except InvalidInput as exc:
        value = service.get(account.id).values.get(key)
        return render(
            request,
            "field_edit.html",
            _edit_context(key, value, {key: exc.message}),
            status_code=400,
        )
    response = RedirectResponse("/profile", status_code=303)
    flash(request, response, f"{label} removed from your profile.", "success")
    return response


@router.get("/profile/custom/new")
def new_custom_form(request: Request, account: PageIndividual) -> Response:
    return render(request, "custom_edit.html", {"field": None, "form": {}, "errors": {}})


@router.get("/profile/custom/{key}")
def edit_custom_form(
    key: str, request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep
) -> Response:
    field = ProfileService(db, rt).custom(account.id, key)
    return render(
        request,
        "custom_edit.html",
        {"field": field, "form": {"label": field.label, "value": field.value}, "errors": {}},
    )


def _custom_form(form: FormData) -> tuple[str, str]:
    label, value = form.get("label", ""), form.get("value", "")
    return (label if isinstance(label, str) else ""), (value if isinstance(value, str) else "")


@router.post("/profile/custom", dependencies=[CSRFChecked])
def add_custom(
    request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep, form: FormDep
) -> Response:
    label, value = _custom_form(form)
    try:
        field = ProfileService(db, rt).add_custom(account, label, value)
    except InvalidInput as exc:
        return render(
            request,
            "custom_edit.html",
            {
                "field": None,
                "form": {"label": label, "value": value},
                "errors": {exc.field or "value": exc.message},
            },
            status_code=400,
        )
    response = RedirectResponse("/profile", status_code=303)
    flash(request, response, f"{field.label} added.", "success")
    return response


@router.post("/profile/custom/{key}", dependencies=[CSRFChecked])
def save_custom(
    key: str, request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep, form: FormDep
) -> Response:
    label, value = _custom_form(form)
    service = ProfileService(db, rt)
    existing = service.custom(account.id, key)
    try:
        field = service.update_custom(account, key, label, value)
    except InvalidInput as exc:
        return render(
            request,
            "custom_edit.html",
            {
                "field": existing,
                "form": {"label": label, "value": value},
                "errors": {exc.field or "value": exc.message},
            },
            status_code=400,
        )
    response = RedirectResponse("/profile", status_code=303)
    flash(request, response, f"{field.label} saved.", "success")
    return response
