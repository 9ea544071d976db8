"""The individual's profile as JSON (session cookie plus X-CSRF-Token for changes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Response, status

from vault import csrf
from vault.accounts.dependencies import IndividualDep, ViewerDep
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import Forbidden, InvalidInput, NotAuthenticated, NotFound, error_responses
from vault.profile.catalogue import STANDARD_FIELDS
from vault.profile.schemas import (
    CustomFieldIn,
    CustomFieldOut,
    FieldSpecOut,
    FieldValueIn,
    FieldValueOut,
    ProfileOut,
)
from vault.profile.service import ProfileService
from vault.routing import APIRouter


def require_csrf_header(
    request: Request,
    rt: RuntimeDep,
    x_csrf_token: Annotated[str | None, Header()] = None,  # csrf.verify bounds it
) -> None:
    csrf.verify(request, rt, x_csrf_token)


router = APIRouter(prefix="/api/v1/profile", tags=["profile"])
_changes = [Depends(require_csrf_header)]
_auth_errors = (NotAuthenticated, Forbidden)


@router.get("/catalogue", response_model=list[FieldSpecOut])
def catalogue() -> list[FieldSpecOut]:
    """The standard fields, their kinds and the consent scope naming each."""
    return [
        FieldSpecOut(key=s.key, label=s.label, kind=s.kind, scope=s.scope) for s in STANDARD_FIELDS
    ]


@router.get("", response_model=ProfileOut, responses=error_responses(*_auth_errors))
def read_profile(account: IndividualDep, db: DbDep, rt: RuntimeDep) -> ProfileOut:
    profile = ProfileService(db, rt).get(account.id)
    return ProfileOut(
        fields=profile.values,
        custom=[CustomFieldOut(key=c.key, label=c.label, value=c.value) for c in profile.custom],
    )


@router.put(
    "/fields/{key}",
    response_model=FieldValueOut,
    dependencies=_changes,
    responses=error_responses(*_auth_errors, NotFound, InvalidInput),
)
def write_field(
    key: str,
    body: FieldValueIn,
    account: IndividualDep,
    viewer: ViewerDep,
    db: DbDep,
    rt: RuntimeDep,
) -> FieldValueOut:
    """The email address (the sign-in) is not changed here: it changes only once the new
    address is confirmed from a mail (the account page's form)."""
    value = ProfileService(db, rt).set_field(account, key, body.value)
    return FieldValueOut(key=key, value=value)


@router.delete(
    "/fields/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=_changes,
    responses=error_responses(*_auth_errors, NotFound, InvalidInput),
)
def clear_field(key: str, account: IndividualDep, db: DbDep, rt: RuntimeDep) -> Response:
    ProfileService(db, rt).clear_field(account, key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/custom",
    response_model=CustomFieldOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=_changes,
    responses=error_responses(*_auth_errors, InvalidInput),
)
def add_custom(
    body: CustomFieldIn, account: IndividualDep, db: DbDep, rt: RuntimeDep
) -> CustomFieldOut:
    field = ProfileService(db, rt).add_custom(account, body.label, body.value)
    return CustomFieldOut(key=field.key, label=field.label, value=field.value)
