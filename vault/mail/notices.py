"""Notices: listed in the portal with an unread count, and mailed per the person's switches.

Security notices (password changed, address changed, second factor added or removed, a new
device) are always mailed and cannot be switched off. A new offer on an intent is mailed at
most once an hour per intent: offers that arrive within the hour are gathered into the next
message, which the scheduled jobs send (:func:`send_due_notices`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, Select, Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from vault.base import utcnow
from vault.errors import InvalidInput
from vault.mail import letters
from vault.mail.models import Notice, NoticeSetting
from vault.mail.outbox import queue_mail
from vault.pgasync import Conn, compiled
from vault.profile.service import ProfileService
from vault.runtime import Runtime

SWITCHABLE: Final[dict[str, str]] = {
    "new_offer": "A new offer on one of your intents (at most one email an hour per intent)",
    "new_connection": "A new connection: you allowed a vendor to read your data",
    "connection_expiring": "A connection ends in a week",
}
"""Kinds a person may stop mailing, with the words of the switch on the account page."""

SECURITY: Final[frozenset[str]] = frozenset(letters.SECURITY_WORDS)
"""Kinds that are always mailed."""

LISTED: Final[dict[str, str]] = {
    "new_offer": "New offers on one of your intents",
    "new_connection": "A vendor was connected to your vault",
    "connection_expiring": "A connection ends in about a week",
    **{kind: words[0] for kind, words in letters.SECURITY_WORDS.items()},
}
"""What the portal's list says for each kind."""

OFFER_MAIL_EVERY: Final = timedelta(hours=1)
UNSUBSCRIBE_VALID_FOR: Final = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class ListedNotice:
    id: uuid.UUID
    kind: str
    text: str
    count: int
    link: str
    at: datetime
    unread: bool


def _link(kind: str, ref: str | None) -> str:
    if kind == "new_offer" and ref:
        return f"/intents/{ref}"
    if kind in ("new_connection", "connection_expiring"):
        return "/connections"
    return "/account"


def _url(rt: Runtime, path: str) -> str:
    return rt.settings.base_url + path


def mail_enabled(db: Session, account_id: uuid.UUID, kind: str) -> bool:
    if kind in SECURITY:
        return True
    row = db.get(NoticeSetting, (account_id, kind))
    return True if row is None else row.email


def switches(db: Session, account_id: uuid.UUID) -> dict[str, bool]:
    rows = db.scalars(select(NoticeSetting).where(NoticeSetting.account_id == account_id))
    found = {row.kind: row.email for row in rows}
    return {kind: found.get(kind, True) for kind in SWITCHABLE}


def set_switch(db: Session, account_id: uuid.UUID, kind: str, email: bool) -> None:
    if kind not in SWITCHABLE:
        raise InvalidInput("There is no such kind of notice to switch.", field="form")
    row = db.get(NoticeSetting, (account_id, kind))
    if row is None:
        db.add(NoticeSetting(account_id=account_id, kind=kind, email=email))
    else:
        row.email = email
    db.flush()


# -- unsubscribe links ------------------------------------------------------------------------
def _unsubscribe_mac(rt: Runtime, payload: str) -> str:
    mac = hmac.new(
        rt.secrets.token_hash_key, b"unsubscribe\x00" + payload.encode(), hashlib.sha256
    ).digest()[:18]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def unsubscribe_token(rt: Runtime, account_id: uuid.UUID, kind: str, now: datetime) -> str:
    expires = int((now + UNSUBSCRIBE_VALID_FOR).timestamp())
    payload = f"{account_id.hex}.{kind}.{expires}"
    return f"{payload}.{_unsubscribe_mac(rt, payload)}"


def read_unsubscribe(rt: Runtime, token: str) -> tuple[uuid.UUID, str]:
    """The (account, kind) an unsubscribe token names, or :class:`InvalidInput`."""
    bad = InvalidInput("This unsubscribe link is not valid or has expired.", field="form")
    if not token or len(token) > 200 or token.count(".") != 3:
        raise bad
    payload, mac = token.rsplit(".", 1)
    if not hmac.compare_digest(mac, _unsubscribe_mac(rt, payload)):
        raise bad
    account_hex, kind, expires = payload.split(".")
    try:
        account_id = uuid.UUID(hex=account_hex)
        ends = int(expires)
    except ValueError:
        raise bad from None
    if kind not in SWITCHABLE or ends < utcnow().timestamp():
        raise bad
    return account_id, kind


def _unsubscribe_url(rt: Runtime, account_id: uuid.UUID, kind: str, now: datetime) -> str:
    return _url(rt, f"/notices/unsubscribe?t={unsubscribe_token(rt, account_id, kind, now)}")


# -- recording and mailing --------------------------------------------------------------------
def _record(
    db: Session,
    account_id: uuid.UUID,
    kind: str,
    ref: str | None,
    now: datetime,
    *,
    email_due_at: datetime | None = None,
) -> Notice:
    notice = Notice(
        id=uuid.uuid4(),
        account_id=account_id,
        kind=kind,
        ref=ref,
        count=1,
        created_at=now,
        updated_at=now,
        email_due_at=email_due_at,
    )
    db.add(notice)
    db.flush()
    return notice


def queue_security_notice(
    db: Session,
    rt: Runtime,
    account_id: uuid.UUID,
    kind: str,
    *,
    to: str | None = None,
    detail: str | None = None,
    now: datetime | None = None,
) -> None:
    """Record a security notice and mail it (in the caller's transaction), to ``to`` or else
    the account's sign-in address. ``kind``: password_changed, email_changed, factor_added,
    factor_removed, new_device. These cannot be switched off. ``detail``: a few words the mail
    adds (the new device's coarse browser label), never personal data."""
    if kind not in SECURITY:
        raise ValueError(f"not a security notice: {kind}")
    now = now or utcnow()
    _record(db, account_id, kind, None, now)
    address = to or ProfileService(db, rt).email_of(account_id)
    if not address:
        return
    letter = letters.security(
        kind, f"{now:%Y-%m-%d %H:%M} UTC", _url(rt, "/account"), detail=detail
    )
    queue_mail(db, rt, account_id, kind, address, letter, now=now)


def notify(
    db: Session,
    rt: Runtime,
    account_id: uuid.UUID,
    kind: str,
    ref: str | uuid.UUID | None = None,
    *,
    now: datetime | None = None,
) -> None:
    """Record a switchable notice (in the caller's transaction) and mail it if the person
    wants it: a new connection or an expiring one at once, new offers batched per intent."""
    if kind not in SWITCHABLE:
        raise ValueError(f"not a notice kind: {kind}")
    now = now or utcnow()
    ref_text = str(ref) if ref is not None else None
    if kind == "new_offer":
        _offer_arrived(db, account_id, ref_text, now)
        return
    _record(db, account_id, kind, ref_text, now)
    if not mail_enabled(db, account_id, kind):
        return
    address = ProfileService(db, rt).email_of(account_id)
    if not address:
        return
    url = _url(rt, _link(kind, ref_text))
    unsubscribe = _unsubscribe_url(rt, account_id, kind, now)
    letter = (
        letters.new_connection(url, unsubscribe)
        if kind == "new_connection"
        else letters.connection_expiring(url, unsubscribe)
    )
    queue_mail(db, rt, account_id, kind, address, letter, now=now)


def bump_offer_notice(
    account: ColumnElement[uuid.UUID], ref: ColumnElement[str], *extra: ColumnElement[bool]
) -> Update:
    """One more offer on the unread "new offers" notice of ``account`` about ``ref`` (as
    expressions: bound values, or the columns of a statement's own rows), if there is one and
    the ``extra`` conditions hold; returns its id and when its mail is due."""
    unread = (
        select(Notice.id)
        .where(
            Notice.account_id == account,
            Notice.kind == "new_offer",
            Notice.ref == ref,
            Notice.read_at.is_(None),
        )
        .order_by(Notice.created_at.desc())
        .limit(1)
        .with_for_update(of=Notice)
        .correlate(None)  # its own read of notices, not the row being updated
        .scalar_subquery()
    )
    return (
        update(Notice)
        .where(Notice.id == unread, *extra)
        .values(count=Notice.count + 1, updated_at=bindparam("p_now", type_=Notice.updated_at.type))
        .returning(Notice.id, Notice.email_due_at)
    )


_BUMP_OFFER_NOTICE = bump_offer_notice(bindparam("p_account"), bindparam("p_ref"))
"""One more offer on the intent's unread notice, if there is one: one statement for the usual
case (offers arriving on an intent whose notice is already waiting to be read), built once."""


def _offer_arrived(db: Session, account_id: uuid.UUID, ref: str | None, now: datetime) -> None:
    """One unread notice per intent gathers its new offers; its mail is due at once, or an
    hour after the intent's last offer mail. (Offers on one intent are made with the intent's
    row locked, so two never race to create its notice.)"""
    conn = db.connection()
    bumped = conn.execute(
        _BUMP_OFFER_NOTICE, {"p_account": account_id, "p_ref": ref, "p_now": now}
    ).one_or_none()
    if bumped is not None and bumped.email_due_at is not None:
        return  # its mail is already due: nothing else changes
    due = None
    if mail_enabled(db, account_id, "new_offer"):
        last = db.scalar(_LAST_OFFER_MAIL, {"p_account": account_id, "p_ref": ref})
        due = _offer_mail_due(now, last)
    if bumped is None:
        _record(db, account_id, "new_offer", ref, now, email_due_at=due)
    elif due is not None:
        conn.execute(_SET_DUE, {"p_id": bumped.id, "p_due": due})


async def offer_notice_bumped(
    conn: Conn,
    account_id: uuid.UUID,
    ref: str,
    notice_id: uuid.UUID,
    due: datetime | None,
    now: datetime,
) -> None:
    """After a new offer bumped the intent's unread notice (``due``: when its mail was due
    before), in the same transaction: its mail made due as :func:`notify` would, unless it
    is due already or the owner does not want offer mail."""
    if due is not None:
        return
    mine = {"p_account": account_id, "p_ref": ref}
    switched = await conn.row(_OFFER_MAIL_SQL, mine)
    if switched is not None and not switched.email:
        return  # no mail wanted: the count is all that changes
    latest = await conn.row(_LAST_MAIL_SQL, mine)
    due = _offer_mail_due(now, latest[0] if latest is not None else None)
    await conn.run(_SET_DUE_SQL, {"p_id": notice_id, "p_due": due})


def _offer_mail_due(now: datetime, last: datetime | None) -> datetime:
    """When an intent's offer mail is due: now, or an hour after its last one."""
    return max(now, last + OFFER_MAIL_EVERY) if last else now


_LAST_OFFER_MAIL = select(func.max(Notice.emailed_at)).where(
    Notice.account_id == bindparam("p_account"),
    Notice.kind == "new_offer",
    Notice.ref == bindparam("p_ref"),
)
_SET_DUE = (
    update(Notice)
    .where(Notice.id == bindparam("p_id"))
    .values(email_due_at=bindparam("p_due", type_=Notice.email_due_at.type))
)
_LAST_MAIL_SQL = compiled(_LAST_OFFER_MAIL)
_SET_DUE_SQL = compiled(_SET_DUE)
_OFFER_MAIL_SQL = compiled(
    select(NoticeSetting.email).where(
        NoticeSetting.account_id == bindparam("p_account"), NoticeSetting.kind == "new_offer"
    )
)
"""The owner's switch for offer mail (no row: on, as :func:`mail_enabled` reads it)."""


def send_due_notices(db: Session, rt: Runtime, *, now: datetime | None = None) -> int:
    """Queue the batched offer mails that are due; returns how many."""
    now = now or utcnow()
    due = list(
        db.scalars(
            select(Notice)
            .where(Notice.email_due_at.is_not(None), Notice.email_due_at <= now)
            .order_by(Notice.email_due_at)
            .limit(200)
        )
    )
    sent = 0
    for notice in due:
        claimed = db.execute(
            update(Notice)
            .where(Notice.id == notice.id, Notice.email_due_at.is_not(None))
            .values(email_due_at=None, emailed_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue
        if not mail_enabled(db, notice.account_id, notice.kind):
            continue
        address = ProfileService(db, rt).email_of(notice.account_id)
        if not address:
            continue
        letter = letters.new_offers(
            notice.count,
            _url(rt, _link(notice.kind, notice.ref)),
            _unsubscribe_url(rt, notice.account_id, notice.kind, now),
        )
        queue_mail(db, rt, notice.account_id, notice.kind, address, letter, now=now)
        sent += 1
    return sent


# -- the portal's list ------------------------------------------------------------------------
def unread_query(account_id: uuid.UUID) -> Select[int]:
    """How many notices of the account are unread (a query, to combine with others)."""
    return (
        select(func.count())
        .select_from(Notice)
        .where(Notice.account_id == account_id, Notice.read_at.is_(None))
    )


def unread_count(db: Session, account_id: uuid.UUID) -> int:
    return int(db.scalar(unread_query(account_id)) or 0)


def listed(db: Session, account_id: uuid.UUID, limit: int = 100) -> list[ListedNotice]:
    rows = db.scalars(
        select(Notice)
        .where(Notice.account_id == account_id)
        .order_by(Notice.updated_at.desc(), Notice.id)
        .limit(limit)
    )
    return [
        ListedNotice(
            id=row.id,
            kind=row.kind,
            text=LISTED.get(row.kind, row.kind),
            count=row.count,
            link=_link(row.kind, row.ref),
            at=row.updated_at,
            unread=row.read_at is None,
        )
        for row in rows
    ]


def mark_all_read(db: Session, account_id: uuid.UUID, now: datetime | None = None) -> int:
    result = db.execute(
        update(Notice)
        .where(Notice.account_id == account_id, Notice.read_at.is_(None))
        .values(read_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
