"""Portal pages of the mail channel: the notices list, one-click unsubscribe, and in development
without SMTP the mailbox of ``.eml`` files the vault wrote."""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Annotated, Any

from fastapi import Form, Request, Response
from fastapi.responses import RedirectResponse

from vault.dependencies import DbDep, RuntimeDep
from vault.errors import VaultError
from vault.mail.notices import SWITCHABLE, listed, mark_all_read, read_unsubscribe, set_switch
from vault.routing import APIRouter
from vault.runtime import Runtime
from web.dependencies import CSRFChecked, PageAccount
from web.templating import render, render_error

router = APIRouter(include_in_schema=False)

_EML_NAME = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f-]{36}\.eml$")
_LINK = re.compile(r"https?://[^\s<>\"]+")
DEV_MAIL_LIMIT = 200


@router.get("/notices")
def notices_page(request: Request, account: PageAccount, db: DbDep) -> Response:
    items = listed(db, account.id)
    unread = sum(1 for item in items if item.unread)
    return render(request, "notices.html", {"notices": items, "unread": unread})


@router.post("/notices/read", dependencies=[CSRFChecked])
def notices_read(request: Request, account: PageAccount, db: DbDep) -> Response:
    mark_all_read(db, account.id)
    return RedirectResponse("/notices", status_code=303)


@router.get("/notices/unsubscribe")
def unsubscribe_form(request: Request, rt: RuntimeDep, t: str = "") -> Response:
    try:
        _account_id, kind = read_unsubscribe(rt, t)
    except VaultError as exc:
        return render_error(request, 400, exc.message)
    return render(
        request, "unsubscribe.html", {"token": t, "words": SWITCHABLE[kind], "done": False}
    )


@router.post("/notices/unsubscribe")
def unsubscribe(
    request: Request, db: DbDep, rt: RuntimeDep, t: str = "", token: Annotated[str, Form()] = ""
) -> Response:
    """RFC 8058 one-click: a mail client POSTs ``List-Unsubscribe=One-Click`` to the URL of the
    ``List-Unsubscribe`` header, without cookies; the signed token in the URL is the authority
    (it can only switch one kind of notice off, for one account). No CSRF token, on purpose."""
    try:
        account_id, kind = read_unsubscribe(rt, t or token)
    except VaultError as exc:
        return render_error(request, 400, exc.message)
    set_switch(db, account_id, kind, False)
    return render(request, "unsubscribe.html", {"words": SWITCHABLE[kind], "done": True})


def dev_mailbox(rt: Runtime) -> bool:
    """Development without SMTP: mail is written under ``mail_dir`` and listed at /dev/mail."""
    return not rt.settings.is_production and not rt.settings.smtp_url


def _parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


@router.get("/dev/mail")
def dev_mailbox_page(request: Request, rt: RuntimeDep) -> Response:
    """Development only (no SMTP): the messages the vault wrote under ``mail_dir``, newest
    first. Absent (404) in production or when SMTP is set."""
    if not dev_mailbox(rt):
        return render_error(request, 404, "There is no such page.")
    directory = rt.settings.mail_dir
    names = (
        sorted((p.name for p in directory.glob("*.eml") if _EML_NAME.match(p.name)), reverse=True)
        if directory.is_dir()
        else []
    )
    messages: list[dict[str, Any]] = []
    for name in names[:DEV_MAIL_LIMIT]:
        message = _parse((directory / name).read_bytes())
        messages.append(
            {
                "name": name,
                "to": message["To"],
                "subject": message["Subject"],
                "date": message["Date"],
            }
        )
    return render(request, "dev_mail.html", {"messages": messages, "directory": str(directory)})


@router.get("/dev/mail/{name}")
def dev_mail_message(name: str, request: Request, rt: RuntimeDep) -> Response:
    if not dev_mailbox(rt) or not _EML_NAME.match(name):
        return render_error(request, 404, "There is no such page.")
    path = rt.settings.mail_dir / name
    if not path.is_file():
        return render_error(request, 404, "There is no such message.")
    message = _parse(path.read_bytes())
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    return render(
        request,
        "dev_mail_message.html",
        {
            "message": message,
            "headers": [(k, str(v)) for k, v in message.items()],
            "text": text,
            "links": _LINK.findall(text),
        },
    )
