"""The vendors' side of intents: list what is open to them, answer with offers.

What a vendor app sees, and nothing more: intents that are published, open and not past their
closing time, whose owner's account is active and has not blocked the app. Never a draft, a
withdrawn, closed or expired intent, an intent of an erased individual, nor another app's
offers. Each intent shows its owner as a pseudonym stable for this app and different for any
other (:mod:`intents.pseudonyms`).

Listings are keyset-paginated in a stable order (newest published first, then id), so a page
costs the same at any depth and at any table size: the partial indexes over open intents
(``ix_intents_open_*``) are read in order and stop after one page.
"""

from __future__ import annotations

import base64
import binascii
import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, cast

from sqlalchemy import (
    ColumnElement,
    Executable,
    Row,
    Select,
    String,
    Table,
    Uuid,
    any_,
    bindparam,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.types import ARRAY
from starlette.concurrency import run_in_threadpool

from consent.vendors.models import VendorApp
from intents import money, taxonomy
from intents.blocks import sibling_apps
from intents.errors import IntentClosed, OfferDeclined, OfferNotLive
from intents.models import Intent, IntentBlock, IntentStatus, Offer, OfferStatus
from intents.pseudonyms import owner_pseudonym
from intents.rules import parse_offer
from vault.accounts.models import Account, AccountStatus
from vault.base import utcnow
from vault.crypto import Binding, DataKey
from vault.errors import InvalidInput, NotFound, VaultError
from vault.keystore import UNWRAPPED, DataKeyRecord
from vault.mail.notices import bump_offer_notice, notify, offer_notice_bumped
from vault.pgasync import SQL, Conn, Rollback, compiled
from vault.runtime import Runtime

DEFAULT_PAGE = 20
MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class IntentFilters:
    category: taxonomy.Category | None = None
    country: str | None = None
    city: str | None = None
    online: bool | None = None
    currency: str | None = None
    budget_min: int | None = None
    budget_max: int | None = None
    needed_before: date | None = None
    published_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class VendorIntent:
    intent: Row[Any]
    """The intent's columns, by name (``intent.id``, ``intent.currency``...): read with Core,
    not loaded as an ORM object, since a page shows many and changes none."""
    title: str
    description: str
    pseudonym: str
    own_offer: Offer | None


def _binding(row: Row[Any], column: str) -> Binding:
    """What an intent's ciphertext is bound to (as ``intents.service.binding``), from a row."""
    return Binding(row.owner_id, Intent.__tablename__, column, row.id)


def encode_cursor(moment: datetime, row_id: uuid.UUID) -> str:
    raw = f"{moment.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    problem = InvalidInput(
        "The cursor is not one this API gave out; pass next_cursor from the previous page "
        "unchanged.",
        field="cursor",
    )
    if len(cursor) > 200:
        raise problem
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment_text, _, id_text = raw.partition("|")
        moment = datetime.fromisoformat(moment_text)
        row_id = uuid.UUID(id_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise problem from None
    if moment.tzinfo is None:
        raise problem
    return moment, row_id


def page_size(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit is between 1 and {MAX_PAGE}.", field="limit")
    return limit


# -- the statements ---------------------------------------------------------------------------
# Built once per shape (which filters a request uses, whether the app's vendor has other apps)
# and cached: each request only binds its values (now, the app, the filters, the cursor), so
# no statement is built and no cache key computed per request. Values are always bound
# parameters; only `status = 'open'` is a literal, so that a generic (prepared) plan can still
# use the partial indexes over open intents.

Shown = Select[Any]

_SHOWN_COLUMNS: tuple[Any, ...] = (
    Intent.id,
    Intent.owner_id,
    Intent.category,
    Intent.title_ct,
    Intent.description_ct,
    Intent.quantity,
    Intent.budget_minor,
    Intent.currency,
    Intent.country,
    Intent.city,
    Intent.online,
    Intent.needed_by,
    Intent.expires_at,
    Intent.published_at,
)
"""What a vendor is shown of an intent (``vendor_api.intents.intent_out``) and what its
ciphertexts are bound to: every row read is decoded, so nothing more."""


Apps = Literal["one", "list", "array"]
"""How a statement names the apps whose blocks hide an intent: ``one`` the app alone (its
vendor has no other), ``list`` its vendor's apps as an expanding ``IN`` (any database),
``array`` the same as one PostgreSQL array parameter (``= ANY``: compiled once to SQL text for
:mod:`vault.pgasync`, which has no expanding parameters)."""


def _visible(
    apps: Apps, vendor_apps: ColumnElement[Any] | None = None
) -> list[ColumnElement[bool]]:
    """What an app may see: published, open, not past closing, owner active, not blocked by
    the owner for this app or any other app of its vendor (``vendor_apps``: an array column
    in place of the ``array`` parameter)."""
    blocker: ColumnElement[bool]
    if apps == "one":
        blocker = IntentBlock.app_id == bindparam("app_id")
    elif apps == "list":
        blocker = IntentBlock.app_id.in_(bindparam("apps", expanding=True))
    else:
        array = bindparam("apps", type_=ARRAY(Uuid())) if vendor_apps is None else vendor_apps
        blocker = IntentBlock.app_id == any_(array)
    # Correlated to any enclosing statement's tables, the token's CTE too (listing_sql).
    blocked = exists().where(IntentBlock.owner_id == Intent.owner_id, blocker)
    blocked = blocked.correlate_except(IntentBlock)
    owner_active = exists().where(
        Account.id == Intent.owner_id, Account.status == AccountStatus.ACTIVE
    )
    return [
        Intent.status == literal_column(f"'{IntentStatus.OPEN.value}'"),
        Intent.expires_at > bindparam("now"),
        Intent.published_at.is_not(None),
        owner_active,
        ~blocked,
    ]


_FILTERS: dict[str, Callable[[], ColumnElement[bool]]] = {
    # A leaf implies its root: name only the leaf, so the planner's estimate is not the
    # product of two correlated conditions (which makes it give up the ordered index scan
    # that stops after one page).
    "category_root": lambda: Intent.category_root == bindparam("category_root"),
    "category": lambda: Intent.category == bindparam("category"),
    "country": lambda: Intent.country == bindparam("country"),
    "city": lambda: Intent.city == bindparam("city"),
    "online": lambda: Intent.online == bindparam("online"),
    "currency": lambda: Intent.currency == bindparam("currency"),
    "budget_min": lambda: Intent.budget_minor >= bindparam("budget_min"),
    "budget_max": lambda: Intent.budget_minor <= bindparam("budget_max"),
    "needed_before": lambda: Intent.needed_by <= bindparam("needed_before"),
    "published_since": lambda: Intent.published_at >= bindparam("published_since"),
}


def _filter_values(
    f: IntentFilters, cursor: str | None = None
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The filters a listing uses (names, in a fixed order) and their values, with the
    cursor's (400 for a cursor this API did not give out)."""
    values: dict[str, Any] = {}
    if cursor:
        values["cursor_at"], values["cursor_id"] = decode_cursor(cursor)
    if f.category is not None:
        if f.category.is_root:
            values["category_root"] = f.category.root
        else:
            values["category"] = f.category.id
    for name in (
        "country",
        "city",
        "online",
        "currency",
        "budget_min",
        "budget_max",
        "needed_before",
        "published_since",
    ):
        value = getattr(f, name)
        if value is not None:
            values[name] = value
    return tuple(name for name in _FILTERS if name in values), values


def _shown(
    apps: Apps,
    app: ColumnElement[Any] | None = None,
    vendor_apps: ColumnElement[Any] | None = None,
) -> Shown:
    """Intents an app may see, each with the app's own offer on it and its owner's data key:
    one statement, so a page costs one round trip however many owners it shows. ``app`` and
    ``vendor_apps``: columns of an enclosing statement in place of those parameters."""
    app = bindparam("app_id") if app is None else app
    return (
        select(
            *_SHOWN_COLUMNS,
            Offer.id.label("own_offer_id"),
            DataKeyRecord.id.label("key_id"),
            DataKeyRecord.kek_id.label("key_kek_id"),
            DataKeyRecord.wrapped.label("key_wrapped"),
        )
        .select_from(Intent)
        .outerjoin(Offer, (Offer.intent_id == Intent.id) & (Offer.app_id == app))
        .outerjoin(DataKeyRecord, DataKeyRecord.owner_id == Intent.owner_id)
        .where(*_visible(apps, vendor_apps))
    )


def _ordered(
    apps: Apps,
    filters: tuple[str, ...],
    after_cursor: bool,
    app: ColumnElement[Any] | None = None,
    vendor_apps: ColumnElement[Any] | None = None,
) -> Shown:
    """A listing's statement but its page size: newest first, after the cursor if any."""
    query = _shown(apps, app, vendor_apps).where(*(_FILTERS[name]() for name in filters))
    if after_cursor:
        query = query.where(
            tuple_(Intent.published_at, Intent.id)
            < tuple_(
                bindparam("cursor_at", type_=Intent.published_at.type),
                bindparam("cursor_id", type_=Intent.id.type),
            )
        )
    return query.order_by(Intent.published_at.desc(), Intent.id.desc())


@functools.cache
def _listing(apps: Apps, filters: tuple[str, ...], after_cursor: bool) -> Shown:
    return _ordered(apps, filters, after_cursor).limit(bindparam("size"))


@functools.lru_cache(maxsize=256)
def listing_sql(token: Any, filters: tuple[str, ...], after_cursor: bool, rows: int) -> SQL:
    """A listing for :mod:`vault.pgasync` in one statement with the app's token: each row of
    ``token`` (a CTE with the app's ``app_id`` and its vendor's apps as the array ``apps``)
    joined to the page it may see (its columns null when the page is empty), so that the
    token checked is the token whose page is read, in one snapshot and one round trip.

    ``rows`` is in the text (``LIMIT 21``), not a parameter. psycopg prepares a statement on
    its fifth run, and PostgreSQL then plans it once (a generic plan) when that plan costs
    little more than planning it for each run's values. With ``LIMIT`` a parameter the
    generic plan assumes a tenth of the rows, so it never did: every listing was planned
    again, 0.45 ms of the database's time for 0.1 ms of running it (``bench/cpu.py --plans``
    shows each prepared statement's plans). The cache holds the shapes in use (filters,
    cursor, page size: a vendor keeps to a few)."""
    page = (
        _ordered("array", filters, after_cursor, token.c.app_id, token.c.apps)
        .limit(literal_column(str(rows)))
        .lateral("page")
    )
    return compiled(select(token, page).select_from(token.outerjoin(page, true())))


_OFFERS_SQL = compiled(
    select(*cast(Table, Offer.__table__).columns).where(
        Offer.id == any_(bindparam("ids", type_=ARRAY(Uuid())))
    )
)
"""This app's own offers on a page's intents, by id (:func:`listed_async`)."""


@functools.cache
def _one_shown(apps: Apps) -> Shown:
    return _shown(apps).where(Intent.id == bindparam("intent_id"))


@functools.cache
def _one_intent(apps: Apps, lock: bool) -> Select[uuid.UUID, str, datetime, uuid.UUID]:
    """What an offer needs of an intent this app may see (a row, not an ORM object)."""
    query = select(Intent.id, Intent.currency, Intent.expires_at, Intent.owner_id).where(
        Intent.id == bindparam("intent_id"), *_visible(apps)
    )
    return query.with_for_update(of=Intent) if lock else query


_REPLACEABLE = (OfferStatus.LIVE, OfferStatus.WITHDRAWN, OfferStatus.LAPSED)
"""An app's earlier offer in one of these is replaced by its new one."""


@functools.cache
def _offer_upsert(postgres: bool) -> Executable:
    """An app's offer on an intent: inserted, or its earlier offer replaced when that is
    live, withdrawn or lapsed (a declined or accepted one stays: no row comes back). Built
    once per dialect; each call binds the ``p_`` parameters."""
    insert = postgresql.insert if postgres else sqlite.insert
    offer = insert(_OFFERS).values(
        {
            **_new_offer(),
            "intent_id": bindparam("p_intent", type_=_OFFERS.c.intent_id.type),
            "valid_until": bindparam("p_valid_until", type_=_OFFERS.c.valid_until.type),
        }
    )
    upsert: Executable = _or_replace(offer).returning(*_OFFERS.columns)
    return upsert


_OFFERS = cast(Table, Offer.__table__)


def _new_offer() -> dict[str, Any]:
    """An offer's values but its intent and validity, as the ``p_`` parameters."""
    c = _OFFERS.c
    return {
        "id": bindparam("p_id", type_=c.id.type),
        "app_id": bindparam("p_app", type_=c.app_id.type),
        "status": OfferStatus.LIVE,
        "revision": 1,
        "currency": bindparam("p_currency", type_=c.currency.type),
        "price_minor": bindparam("p_price", type_=c.price_minor.type),
        "message": bindparam("p_message", type_=c.message.type),
        "created_at": bindparam("p_now", type_=c.created_at.type),
        "updated_at": bindparam("p_now", type_=c.updated_at.type),
    }


def _or_replace(offer: Any) -> Any:
    """``offer`` (an insert) replacing the app's earlier offer on the intent when that is
    live, withdrawn or lapsed."""
    c = _OFFERS.c
    new = offer.excluded
    return offer.on_conflict_do_update(
        index_elements=[c.intent_id, c.app_id],
        set_={
            "currency": new.currency,
            "price_minor": new.price_minor,
            "message": new.message,
            "valid_until": new.valid_until,
            "status": OfferStatus.LIVE,
            "updated_at": new.updated_at,
            "lapse_reason": None,
            "decided_at": None,
            "revision": c.revision + 1,
        },
        # Not IN (...): a list is an expanding parameter, which the text compiled for
        # vault.pgasync cannot carry.
        where=or_(*(c.status == status for status in _REPLACEABLE)),
    )


def _offer_in_one() -> Select[Any]:
    """The whole of a usual offer as one PostgreSQL statement (:func:`make_offer_async`): the
    intent, if this app may see it and its budget is in the offer's currency, locked; the
    offer made or its earlier one replaced, valid at most until the intent closes; the
    owner's unread notice about the intent bumped. One row (the offer's columns, the owner,
    the notice's id and when its mail is due, each null where that part did nothing), or
    none when the intent is not there for this offer."""
    c = _OFFERS.c
    intent = (
        select(Intent.id, Intent.owner_id, Intent.expires_at)
        .where(
            Intent.id == bindparam("intent_id"),
            Intent.currency == bindparam("p_currency", type_=c.currency.type),
            *_visible("array"),
        )
        .with_for_update(of=Intent)
        .cte("intent")
    )
    columns = [*_new_offer(), "intent_id", "valid_until"]
    values = [
        *_new_offer().values(),
        intent.c.id,
        func.least(bindparam("p_valid_until", type_=c.valid_until.type), intent.c.expires_at),
    ]
    offer = postgresql.insert(_OFFERS).from_select(
        columns, select(*(v if isinstance(v, ColumnElement) else literal(v) for v in values))
    )
    made = _or_replace(offer).returning(*_OFFERS.columns).cte("made")
    bumped = bump_offer_notice(
        intent.c.owner_id, intent.c.id.cast(String), exists(select(made.c.id))
    ).cte("bumped")
    return select(
        *made.c,
        intent.c.owner_id.label("intent_owner_id"),
        bumped.c.id.label("notice_id"),
        bumped.c.email_due_at.label("notice_due_at"),
    ).select_from(intent.outerjoin(made, true()).outerjoin(bumped, true()))


def _views(
    rt: Runtime,
    app_id: uuid.UUID,
    rows: Sequence[Any],
    offers: dict[uuid.UUID, Any],
    keys: dict[uuid.UUID, DataKey],
) -> list[VendorIntent]:
    """Rows of :func:`_shown` as vendor views: titles decrypted with their owners' ``keys``,
    owners pseudonymous, this app's own ``offers`` (ORM objects or rows) attached. A row whose
    owner has no data key any more (erased meanwhile) is left out: nothing of theirs shows."""
    views = []
    for row in rows:
        if row.key_id is None:
            continue
        key = keys[row.key_id]
        views.append(
            VendorIntent(
                intent=row,
                title=key.decrypt(bytes(row.title_ct), _binding(row, "title_ct")).decode(),
                description=key.decrypt(
                    bytes(row.description_ct), _binding(row, "description_ct")
                ).decode(),
                pseudonym=owner_pseudonym(rt, app_id, row.owner_id),
                own_offer=offers.get(row.own_offer_id) if row.own_offer_id else None,
            )
        )
    return views


def _page(rows: list[Any], size: int) -> tuple[list[Any], str | None]:
    """A page of ``size`` from ``size + 1`` rows, and the cursor of the next when there is one."""
    if len(rows) <= size:
        return rows, None
    rows = rows[:size]
    return rows, encode_cursor(rows[-1].published_at, rows[-1].id)


def _listing_params(
    seller: Seller, filters: IntentFilters, cursor: str | None, size: int
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The filters a listing uses and every value its statement binds."""
    names, params = _filter_values(filters, cursor)
    return names, {**params, **_seen_by(seller), "size": size + 1}


def _seen_by(seller: Seller) -> dict[str, Any]:
    """The values :func:`_visible` binds: now, the app, and its vendor's apps."""
    return {"now": utcnow(), "app_id": seller.id, "apps": sorted(seller.vendor_apps)}


def listing_values(
    filters: IntentFilters, cursor: str | None, limit: int | None
) -> tuple[tuple[str, ...], dict[str, Any], int]:
    """What :func:`listing_sql` needs of a request: the filters it uses, the values it binds
    (the app's come from the token) and the page size; 400 for a bad cursor or size."""
    size = page_size(limit)
    names, params = _filter_values(filters, cursor)
    return names, {**params, "now": utcnow()}, size


async def listed_async(
    conn: Conn, rt: Runtime, seller: Seller, rows: Sequence[Any], size: int
) -> tuple[list[VendorIntent], str | None]:
    """The page of a :func:`listing_sql` statement's ``rows`` as :meth:`Market.list_intents`
    answers it, in the event loop: the app's own offers on it (a statement when there are
    any), titles decrypted. Only a data key this process does not hold unwrapped goes to a
    worker thread (the key provider may be a network call)."""
    page, next_cursor = _page([row for row in rows if row.id is not None], size)
    offers: dict[uuid.UUID, Any] = {}
    offer_ids = [row.own_offer_id for row in page if row.own_offer_id is not None]
    if offer_ids:
        offers = {offer.id: offer for offer in await conn.rows(_OFFERS_SQL, {"ids": offer_ids})}
    keys: dict[uuid.UUID, DataKey] = {}
    for row in page:
        if row.key_id is None or row.key_id in keys:
            continue
        key = UNWRAPPED.cached(row.key_id, row.owner_id, row.key_wrapped)
        if key is None:
            key = await run_in_threadpool(
                UNWRAPPED.open, rt.keys, row.key_id, row.owner_id, row.key_kek_id, row.key_wrapped
            )
        keys[row.key_id] = key
    return _views(rt, seller.id, page, offers, keys), next_cursor


_OFFER_IN_ONE_SQL = compiled(_offer_in_one())


async def make_offer_async(
    conn: Conn,
    rt: Runtime,
    seller: Seller,
    intent_id: uuid.UUID,
    raw: dict[str, Any],
) -> tuple[Any, bool, str] | None:
    """:meth:`Market.make_offer` in the event loop, on PostgreSQL (``vault.pgasync``), for
    an offer that will be made: one statement (:func:`_offer_in_one`) in a transaction of its
    own, and the notice's mail made due when it was not. Returns what
    :meth:`Market.make_offer` returns (the offer as a row), or None, having changed nothing,
    where the full path must answer: an offer that does not parse (its answer names the
    intent's currency), an intent the app may not see or in another currency (404, 409),
    an offer that may not be replaced (declined or accepted), the first offer since the owner
    read the intent's notice (which makes a new notice and may queue mail)."""
    now = utcnow()
    try:
        currency = money.parse_currency(raw.get("currency"))
        clean = parse_offer(raw, currency, now=now)
    except VaultError:
        return None
    new_id = uuid.uuid4()
    values = {
        **_seen_by(seller),
        "intent_id": intent_id,
        "p_id": new_id,
        "p_app": seller.id,
        "p_currency": currency,
        "p_price": clean["price_minor"],
        "p_message": clean["message"],
        "p_valid_until": clean["valid_until"],
        "p_now": now,
    }
    async with conn.transaction():
        row = await conn.row(_OFFER_IN_ONE_SQL, values)
        if row is None or row.id is None or row.notice_id is None:
            raise Rollback()
        owner = row.intent_owner_id
        await offer_notice_bumped(
            conn, owner, str(intent_id), row.notice_id, row.notice_due_at, now
        )
        return row, row.id == new_id, owner_pseudonym(rt, seller.id, owner)
    return None


def _offer_values(
    new_id: uuid.UUID, intent: Any, app_id: uuid.UUID, clean: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """What :func:`_offer_upsert` binds."""
    return {
        "p_id": new_id,
        "p_intent": intent.id,
        "p_app": app_id,
        "p_currency": intent.currency,
        "p_price": clean["price_minor"],
        "p_message": clean["message"],
        "p_valid_until": clean["valid_until"],
        "p_now": now,
    }


@dataclass(frozen=True, slots=True)
class Seller:
    """The app a market view is for: its id and its vendor's apps (a block of any of them
    applies to all)."""

    id: uuid.UUID
    vendor_apps: frozenset[uuid.UUID]

    @classmethod
    def of(cls, db: Session, app: VendorApp) -> Seller:
        return cls(app.id, frozenset(sibling_apps(db, app)))


class Market:
    """One vendor app's view of the intents and its own offers."""

    def __init__(self, db: Session, rt: Runtime, app: Seller) -> None:
        self.db = db
        self.rt = rt
        self.app = app

    @property
    def vendor_apps(self) -> frozenset[uuid.UUID]:
        return self.app.vendor_apps

    # -- what this app may see ----------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        return _seen_by(self.app)

    def _apps(self) -> Apps:
        return "one" if len(self.vendor_apps) == 1 else "list"

    def _views(self, rows: Sequence[Row[Any]]) -> list[VendorIntent]:
        """The rows of :func:`_shown` as vendor views: titles decrypted, owners pseudonymous,
        this app's own offers loaded (one more statement, only when the page holds any)."""
        offer_ids = [row.own_offer_id for row in rows if row.own_offer_id is not None]
        offers: dict[uuid.UUID, Any] = {}
        if offer_ids:
            found = self.db.scalars(select(Offer).where(Offer.id.in_(offer_ids)))
            offers = {offer.id: offer for offer in found}
        keys = {
            row.key_id: UNWRAPPED.open(
                self.rt.keys, row.key_id, row.owner_id, row.key_kek_id, row.key_wrapped
            )
            for row in rows
            if row.key_id is not None
        }
        return _views(self.rt, self.app.id, rows, offers, keys)

    def list_intents(
        self, filters: IntentFilters, *, cursor: str | None = None, limit: int | None = None
    ) -> tuple[list[VendorIntent], str | None]:
        """One page of open intents, newest published first; the cursor of the next page."""
        size = page_size(limit)
        names, params = _listing_params(self.app, filters, cursor, size)
        query = _listing(self._apps(), names, bool(cursor))
        rows, next_cursor = _page(list(self.db.execute(query, params).all()), size)
        return self._views(rows), next_cursor

    def _find(
        self, intent_id: uuid.UUID, *, lock: bool = False
    ) -> Row[uuid.UUID, str, datetime, uuid.UUID]:
        """The intent's id, currency, closing time and owner if this app may see it now; 404
        otherwise (never saying why)."""
        query = _one_intent(self._apps(), lock)
        params = {**self._params(), "intent_id": intent_id}
        intent = self.db.connection().execute(query, params).one_or_none()
        if intent is None:
            raise NotFound("There is no open intent with this id.")
        return intent

    def intent(self, intent_id: uuid.UUID) -> VendorIntent:
        query = _one_shown(self._apps())
        rows = self.db.execute(query, {**self._params(), "intent_id": intent_id}).all()
        views = self._views(rows)
        if not views:
            raise NotFound("There is no open intent with this id.")
        return views[0]

    def _closed_to_offers(self, intent_id: uuid.UUID) -> None:
        """For an intent this app cannot see: 409 if it once could (it closed), else 404."""
        row = self.db.execute(
            select(Intent.status, Intent.published_at, Intent.owner_id).where(
                Intent.id == intent_id
            )
        ).first()
        if row is None or row.published_at is None:
            raise NotFound("There is no open intent with this id.")
        owner = self.db.get(Account, row.owner_id)
        if owner is None or owner.status != AccountStatus.ACTIVE:
            raise NotFound("There is no open intent with this id.")
        # Closed, withdrawn, expired, or closed to this vendor by a block: the same answer,
        # so a vendor cannot tell it was blocked.
        raise IntentClosed("This intent is closed: it no longer takes offers.")

    # -- offers -------------------------------------------------------------------------------

    def make_offer(self, intent_id: uuid.UUID, raw: dict[str, Any]) -> tuple[Offer, bool, str]:
        """Offer on an open intent, replacing this app's earlier offer on it (live, withdrawn,
        or lapsed because the intent changed or the app was unblocked).

        Returns the offer, whether it is new, and the pseudonym of the intent's owner (as
        :meth:`offer` does, without reading the offer back). The intent row is locked, so an
        offer and an acceptance never cross.
        """
        try:
            intent = self._find(intent_id, lock=True)
        except NotFound:
            self._closed_to_offers(intent_id)
            raise
        now = utcnow()
        clean = parse_offer(raw, intent.currency, now=now, closes_at=intent.expires_at)
        # One statement: the app's first offer on the intent, or its earlier one replaced if
        # that is live, withdrawn or lapsed (not when declined or accepted: then no row).
        new_id = uuid.uuid4()
        row = (
            self.db.connection()
            .execute(
                _offer_upsert(self.db.get_bind().dialect.name == "postgresql"),
                _offer_values(new_id, intent, self.app.id, clean, now),
            )
            .one_or_none()
        )
        if row is None:
            status = self.db.scalar(
                select(Offer.status).where(
                    Offer.intent_id == intent.id, Offer.app_id == self.app.id
                )
            )
            if status == OfferStatus.DECLINED:
                raise OfferDeclined(
                    "The individual declined your offer on this intent; it takes no new offer "
                    "from you."
                )
            raise OfferNotLive(f"Your offer on this intent was {status}.")
        loaded = self.db.identity_map.get(self.db.identity_key(Offer, row.id))
        if loaded is not None:  # this session read it before: not any more as it was
            self.db.expire(loaded)
        offer = Offer(**row._asdict())
        notify(self.db, self.rt, intent.owner_id, "new_offer", intent.id, now=now)
        return offer, row.id == new_id, owner_pseudonym(self.rt, self.app.id, intent.owner_id)

    def _own(self, offer_id: uuid.UUID) -> Offer:
        offer = self.db.scalars(
            select(Offer).where(Offer.id == offer_id, Offer.app_id == self.app.id)
        ).one_or_none()
        if offer is None:
            raise NotFound("Your app has no offer with this id.")
        return offer

    def offer(self, offer_id: uuid.UUID) -> tuple[Offer, str]:
        """One of this app's offers and the pseudonym of the intent's owner."""

        offer = self._own(offer_id)
        owner_id = self.db.scalar(select(Intent.owner_id).where(Intent.id == offer.intent_id))
        assert owner_id is not None
        return offer, owner_pseudonym(self.rt, self.app.id, owner_id)

    def offers(
        self, *, status: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> tuple[list[tuple[Offer, str]], str | None]:
        """This app's offers, newest first, each with its owner's pseudonym."""

        size = page_size(limit)
        query = (
            select(Offer, Intent.owner_id)
            .join(Intent, Intent.id == Offer.intent_id)
            .where(Offer.app_id == self.app.id)
        )
        if status is not None:
            if status == "expired":
                query = query.where(Offer.status == OfferStatus.LIVE, Offer.valid_until <= utcnow())
            elif status in set(OfferStatus):
                query = query.where(Offer.status == status)
                if status == OfferStatus.LIVE:
                    query = query.where(Offer.valid_until > utcnow())
            else:
                raise InvalidInput(
                    "status is one of live, expired, withdrawn, accepted, declined, lapsed.",
                    field="status",
                )
        if cursor:
            moment, row_id = decode_cursor(cursor)
            query = query.where(tuple_(Offer.created_at, Offer.id) < tuple_(moment, row_id))
        rows = self.db.execute(
            query.order_by(Offer.created_at.desc(), Offer.id.desc()).limit(size + 1)
        ).all()
        next_cursor = None
        if len(rows) > size:
            rows = rows[:size]
            next_cursor = encode_cursor(rows[-1][0].created_at, rows[-1][0].id)
        return [
            (offer, owner_pseudonym(self.rt, self.app.id, owner_id)) for offer, owner_id in rows
        ], next_cursor

    def update_offer(self, offer_id: uuid.UUID, raw: dict[str, Any]) -> Offer:
        """Change a live offer's price, message or validity (the intent must still be open)."""
        offer = self._own(offer_id)
        if offer.status != OfferStatus.LIVE:
            raise OfferNotLive(f"This offer was {offer.status}; it can no longer be changed.")
        try:
            intent = self._find(offer.intent_id, lock=True)
        except NotFound:
            raise IntentClosed("This intent is closed: its offers can no longer change.") from None
        self.db.refresh(offer)
        if offer.status != OfferStatus.LIVE:
            raise OfferNotLive(f"This offer was {offer.status}; it can no longer be changed.")
        clean = parse_offer(
            raw, intent.currency, now=utcnow(), partial=True, closes_at=intent.expires_at
        )
        for column, value in clean.items():
            setattr(offer, column, value)
        offer.revision += 1
        offer.updated_at = utcnow()
        self.db.flush()
        return offer

    def withdraw_offer(self, offer_id: uuid.UUID) -> Offer:
        offer = self._own(offer_id)
        if offer.status != OfferStatus.LIVE:
            raise OfferNotLive(f"This offer was {offer.status}; there is nothing to withdraw.")
        # Lock the intent, as a decision on the offer does, so the two never cross.
        self.db.execute(select(Intent.id).where(Intent.id == offer.intent_id).with_for_update())
        withdrawn = self.db.execute(
            update(Offer)
            .where(Offer.id == offer.id, Offer.status == OfferStatus.LIVE)
            .values(status=OfferStatus.WITHDRAWN, decided_at=utcnow(), updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if withdrawn.rowcount != 1:  # type: ignore[attr-defined]
            raise OfferNotLive("This offer was decided a moment ago; nothing was withdrawn.")
        self.db.refresh(offer)
        return offer
