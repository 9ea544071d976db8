"""Portal pages: take everything with you (export, and import into a new vault), or erase it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import BackgroundTasks, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import Receive, Scope, Send

from consent.grants.models import Grant
from consent.vendors.models import VendorApp
from intents.models import Intent, Offer
from vault import csrf
from vault.accounts.dependencies import ViewerDep, clear_session_cookie, client_address
from vault.accounts.models import Account
from vault.accounts.service import AccountService
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import VaultError
from vault.factors.dependencies import StepUp
from vault.portability import erasure, export, importer
from vault.portability.parts import portability_of
from vault.routing import APIRouter
from vault.runtime import Runtime
from vault.signup import request_sign_up_with
from web.accounts import home_for
from web.dependencies import CSRFChecked, FormDep, PageIndividual
from web.templating import plural, render

router = APIRouter(include_in_schema=False)

UPLOAD_FIELDS = 10


# -- export -----------------------------------------------------------------------------------


def _summary(request: Request, db: Session, rt: Runtime, owner_id: uuid.UUID) -> dict[str, int]:
    sections = export.sections_of(db, rt, portability_of(request), owner_id)
    return {s.name: s.count() for s in sections}


class FirstChunkFirst(StreamingResponse):
    """Streams ``chunks``, but makes the first before the status line is sent (after the
    request's transaction committed): a failure until then, such as the database being
    away, still answers with an error page (503) instead of a 200 that breaks off. A failure
    after it is the producer's to end cleanly (the export marks its archive incomplete)."""

    def __init__(self, chunks: Iterator[bytes], **options: Any) -> None:
        super().__init__(chunks, **options)
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await run_in_threadpool(next, self._chunks, b"")

        async def body() -> AsyncIterator[bytes]:
            yield first
            async for chunk in iterate_in_threadpool(self._chunks):
                yield chunk

        self.body_iterator = body()
        await super().__call__(scope, receive, send)


@router.get("/account/export", dependencies=[StepUp])
def export_page(request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep) -> Response:
    return render(request, "export.html", {"counts": _summary(request, db, rt, account.id)})


@router.post("/account/export", dependencies=[CSRFChecked, StepUp])
def export_download(
    request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep
) -> Response:
    """The archive, streamed as it is made (memory stays flat however much there is).

    The preparation runs in the request's transaction, which commits before the first byte
    is sent; the archive is then read from a snapshot of its own.
    """
    parts = portability_of(request)
    estimate = export.prepare(db, rt, parts, account.id)
    return FirstChunkFirst(
        export.stream(rt, parts, account.id),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename()}"',
            "Cache-Control": "no-store",
            "X-Export-Estimate": str(estimate),
        },
    )


# -- import into a new vault ------------------------------------------------------------------


def _import_form(
    request: Request, form: dict[str, str], errors: dict[str, str], status_code: int = 200
) -> Response:
    return render(
        request,
        "signup_import.html",
        {"form": form, "errors": errors, "max_mb": rt_max_mb(request)},
        status_code=status_code,
    )


def rt_max_mb(request: Request) -> int:
    runtime: Runtime = request.app.state.runtime
    return runtime.settings.max_import_bytes // (1024 * 1024)


@router.get("/signup/import")
def import_form(request: Request, viewer: ViewerDep) -> Response:
    if viewer.account is not None:
        return RedirectResponse(home_for(viewer.account), status_code=303)
    return _import_form(request, {}, {})


@router.post("/signup/import")
async def import_submit(request: Request, rt: RuntimeDep) -> Response:
    """A new account from another vault's export: verified first, then one transaction that
    asks for the account as sign-up does (a confirmation mail) and puts the data in it."""

    form = await request.form(max_files=1, max_fields=UPLOAD_FIELDS)
    token = form.get(csrf.CSRF_FIELD)
    csrf.verify(request, rt, token if isinstance(token, str) else None)

    def text(name: str) -> str:
        value = form.get(name, "")
        return value[:300] if isinstance(value, str) else ""

    values = {"email": text("email")}
    upload = form.get("archive")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _import_form(
            request, values, {"archive": "Choose the export archive (.zip) to import."}, 400
        )
    return await run_in_threadpool(
        _import_sync, request, rt, values, text("password"), text("password_confirm"), upload
    )


_IMPORTS = threading.BoundedSemaphore(1)
"""Archives are checked one at a time per process: each may take tens of MB while parsed."""


def _failed(rt: Runtime, email: str, address: str) -> None:
    """Count a refused import against the sign-in throttle (its own short transaction, so it
    stays counted although the import rolled back)."""
    with rt.sessions() as db, db.begin():
        AccountService(db, rt).record_failure(email, address)


def _import_sync(
    request: Request,
    rt: Runtime,
    values: dict[str, str],
    password: str,
    password_confirm: str,
    upload: Any,
) -> Response:
    if password != password_confirm:
        return _import_form(
            request, values, {"password_confirm": "The two passwords are not the same."}, 400
        )
    address = client_address(request, rt)
    # An unsigned-in visitor can upload: throttle failures like sign-ins (per address and
    # per email), and check one archive at a time in this process.
    with rt.sessions() as db, db.begin():
        try:
            AccountService(db, rt).check_throttle(values["email"], address)
        except VaultError as exc:
            return _import_form(request, values, {"archive": exc.message}, exc.status_code)
    parts = portability_of(request)
    if not _IMPORTS.acquire(timeout=30):
        return _import_form(
            request, values, {"archive": "The vault is busy importing; try again shortly."}, 503
        )
    try:
        archive = importer.verify(upload.file, parts, rt.settings.import_trusted_keys)
    except importer.ArchiveRefused as exc:
        _failed(rt, values["email"], address)
        return _import_form(request, values, {"archive": exc.message}, 400)
    finally:
        _IMPORTS.release()
    with rt.sessions() as db:
        try:
            with db.begin():
                context = request_sign_up_with(
                    db,
                    rt,
                    values["email"],
                    password,
                    lambda account: importer.import_into(db, rt, parts, account, archive),
                    client_address=address,
                )
        except VaultError as exc:
            _failed(rt, values["email"], address)
            field = getattr(exc, "field", None) or "form"
            return _import_form(request, values, {field: exc.message}, exc.status_code)
    # The same answer whether or not the address was free (then the data waits in the new
    # account until the address is confirmed) or taken (then nothing of it was kept).
    got = context.imported
    return render(
        request,
        "signup_sent.html",
        {
            "vendor": False,
            "imported": (
                f"{plural(got.get('profile', 0), 'profile field')}, "
                f"{plural(got.get('intents', 0), 'intent')} (as drafts), and the list of "
                f"{plural(got.get('previous_vendors', 0), 'vendor')} you had (under "
                "Connections; they must ask you again)"
            ),
            "source": archive.source_label,
        },
    )


# -- erasure ----------------------------------------------------------------------------------


def _vendors_to_tell(db: Session, owner_id: uuid.UUID) -> list[str]:

    apps = (
        select(Grant.app_id)
        .where(Grant.individual_id == owner_id)
        .union(
            select(Offer.app_id)
            .join(Intent, Intent.id == Offer.intent_id)
            .where(Intent.owner_id == owner_id)
        )
    )
    return sorted(db.scalars(select(VendorApp.name).where(VendorApp.id.in_(apps))))


def _erase_page(
    request: Request,
    db: Session,
    rt: Runtime,
    account: Account,
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "erase.html",
        {
            "counts": _summary(request, db, rt, account.id),
            "vendors": _vendors_to_tell(db, account.id),
            "confirmation": erasure.CONFIRMATION,
            "errors": errors,
        },
        status_code=status_code,
    )


@router.get("/account/erase", dependencies=[StepUp])
def erase_page(request: Request, account: PageIndividual, db: DbDep, rt: RuntimeDep) -> Response:
    return _erase_page(request, db, rt, account, {})


@router.post("/account/erase", dependencies=[CSRFChecked, StepUp])
def erase_submit(
    request: Request,
    background: BackgroundTasks,
    account: PageIndividual,
    db: DbDep,
    rt: RuntimeDep,
    form: FormDep,
) -> Response:

    try:
        errors = erasure.refusals(
            db,
            rt,
            account,
            password=form.get("password", ""),
            typed=form.get("confirmation", ""),
            client_address=client_address(request, rt),
        )
    except VaultError as exc:
        return _erase_page(request, db, rt, account, {"password": exc.message}, exc.status_code)
    if errors:
        # Nothing is written but a wrong password's counted attempt, which must stay.
        return _erase_page(request, db, rt, account, errors, status_code=400)
    done = erasure.erase(db, rt, portability_of(request), account.id)
    background.add_task(erasure.compact, rt)
    response = render(
        request,
        "erased.html",
        {"receipt": done.receipt, "payload": done.payload, "account": None, "viewer": None},
    )

    clear_session_cookie(response, rt)
    csrf.rotate(request, session=None)
    return response
