"""The profile read (``GET /vendor/v1/profile``): the vendor API's hottest path, in at most
three statements, each its own transaction (no BEGIN/COMMIT).

The token, its grant, the individual's data key and stored fields come back from one
statement (a join on the token's keyed hash, a row per field): the grant is checked in the
very snapshot that reads the values, so a revocation that committed before is in force,
whichever process committed it. Then the app's rate-limit count (Redis, or one statement)
and the access-log row. The data key is unwrapped once per process
(``vault.keystore.UNWRAPPED``) and only the fields this token may read are decrypted. The
read goes to the access log through the app's
:class:`~consent.grants.recorder.AccessRecorder`: in batches while the app runs, or as a
committed row before the answer is sent.

Two drivers, one logic: on PostgreSQL the read runs in the event loop on psycopg's async
connections (:func:`read_profile_async`, ``vault.pgasync``): measured with ``bench/cpu.py``, a
hop to a worker thread, a pooled SQLAlchemy connection and SQLAlchemy's execution around the
statements cost more than the statements. On SQLite (and where a test shares one connection)
it is one blocking function on a worker thread (:func:`read_profile`). Both run the same
statements (Core, compiled once) and the same checks (``_live``, ``_plan``, ``_opened``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, select
from starlette.concurrency import run_in_threadpool

from consent import scopes
from consent.grants.models import Grant, OAuthToken
from consent.grants.recorder import AccessRecorder
from consent.grants.service import pairwise_subject
from consent.vendors.models import VendorApp
from consent.vendors.ratelimit import READ, Limiter, Usage
from vault.base import utcnow
from vault.crypto import Binding, DataKey, hash_token
from vault.db import autocommit
from vault.keystore import UNWRAPPED, DataKeyRecord
from vault.pgasync import AsyncPostgres, compiled
from vault.profile.catalogue import FIELDS
from vault.profile.models import ProfileField
from vault.runtime import Runtime
from vendor_api.dependencies import of_token
from vendor_api.errors import InsufficientScope, InvalidToken

_TABLE = ProfileField.__tablename__

_READ = (
    of_token(
        select(
            OAuthToken.app_id,
            VendorApp.name.label("app_name"),
            OAuthToken.grant_id,
            OAuthToken.scope,
            OAuthToken.access_expires_at,
            OAuthToken.revoked_at,
            Grant.individual_id,
            cast(Grant.fields, Text).label("fields"),  # decoded once, not on every row
            Grant.expires_at,
            Grant.revoked_at.label("grant_revoked_at"),
            DataKeyRecord.id.label("key_id"),
            DataKeyRecord.kek_id,
            DataKeyRecord.wrapped,
            ProfileField.id.label("field_id"),
            ProfileField.field_key,
            ProfileField.value_ct,
        )
    )
    .outerjoin(DataKeyRecord, DataKeyRecord.owner_id == Grant.individual_id)
    .outerjoin(ProfileField, ProfileField.owner_id == Grant.individual_id)
)
"""The token, its app's name (for the access log), its grant, the individual's data key and
stored fields (a dozen small rows; only the readable ones are opened): one statement, a row
per field, the token's columns on each. Built once; each read only binds the token's hash.
One statement is one snapshot: the grant checked is the grant whose fields are read."""
_READ_SQL = compiled(_READ)
"""The same read for the event loop's connections (:func:`read_profile_async`)."""


@dataclass(frozen=True, slots=True)
class ProfileRead:
    sub: str
    fields: dict[str, Any]
    granted_fields: list[str]
    expires_at: datetime | None
    usage: Usage


def read_profile(
    rt: Runtime,
    limiter: Limiter,
    recorder: AccessRecorder,
    token: str,
    limit: int,
    counted: Callable[[Usage], None],
) -> ProfileRead:
    """The fields ``token`` may read now, logged as one read; raises the API's errors.

    ``counted`` hears the app's usage as soon as the request is counted (errors after that
    carry the rate-limit headers too). Blocking (database, key provider): call it from a
    worker thread. :func:`read_profile_async` is the same read from the event loop.
    """
    token_hash = _token_hash(rt, token)
    now = utcnow()
    # Each step is one statement (the read, the rate-limit count, the access-log row), so
    # each is its own transaction: no BEGIN/COMMIT round trips. A count or a read is committed
    # as soon as it is made, so a refusal after the count still counts.
    with autocommit(rt.sessions) as conn:
        first, rows = _live(conn.execute(_READ, {"token_hash": token_hash}).all(), now)
        usage = limiter.hit(first.app_id, READ, limit, now=now, conn=conn)
        counted(usage)
        refusal, granted, mine = _plan(first, rows, usage, now)
        ordered: dict[str, Any] = {}
        if mine:
            key = UNWRAPPED.open(
                rt.keys, first.key_id, first.individual_id, first.kek_id, first.wrapped
            )
            ordered = _opened(key, first, mine, granted)
            if ordered:
                recorder.record(
                    conn, first.individual_id, first.app_id, first.app_name, list(ordered), now
                )
    if refusal is not None:
        raise refusal
    return _answer(rt, first, ordered, granted, usage)


async def read_profile_async(
    rt: Runtime,
    pg: AsyncPostgres,
    limiter: Limiter,
    recorder: AccessRecorder,
    token: str,
    limit: int,
    counted: Callable[[Usage], None],
) -> ProfileRead:
    """:func:`read_profile` in the event loop, on PostgreSQL: the same statements on an
    async connection (each its own transaction), the count on the limiter's async client.
    Only a data key this process does not hold unwrapped goes to a worker thread (the key
    provider may be a network call)."""
    token_hash = _token_hash(rt, token)
    now = utcnow()
    async with pg.connection() as conn:
        first, rows = _live(await conn.rows(_READ_SQL, {"token_hash": token_hash}), now)
        usage = await limiter.ahit(first.app_id, READ, limit, now=now, conn=conn)
        counted(usage)
        refusal, granted, mine = _plan(first, rows, usage, now)
        ordered: dict[str, Any] = {}
        if mine:
            key = UNWRAPPED.cached(first.key_id, first.individual_id, first.wrapped)
            if key is None:
                key = await run_in_threadpool(
                    UNWRAPPED.open,
                    rt.keys,
                    first.key_id,
                    first.individual_id,
                    first.kek_id,
                    first.wrapped,
                )
            ordered = _opened(key, first, mine, granted)
    if refusal is not None:
        raise refusal
    if ordered:  # logged before it is answered; the connection given back first
        await recorder.arecord(
            pg, first.individual_id, first.app_id, first.app_name, list(ordered), now
        )
    return _answer(rt, first, ordered, granted, usage)


def _token_hash(rt: Runtime, token: str) -> bytes:
    if not token or len(token) > 200:
        raise _unknown()
    return hash_token(rt.secrets.token_hash_key, token)


def _live(rows: Sequence[Any], now: datetime) -> tuple[Any, Sequence[Any]]:
    """The token's first row and all rows, if the token is known, live and not revoked."""
    if not rows:
        raise _unknown()
    first = rows[0]
    if first.revoked_at is not None or first.access_expires_at <= now:
        raise _unknown()
    return first, rows


def _plan(
    first: Any, rows: Sequence[Any], usage: Usage, now: datetime
) -> tuple[InsufficientScope | InvalidToken | None, list[str], list[Any]]:
    """After the count: why the read is refused (or None), the fields granted and in the
    token's scope, and the stored rows to open (only those: nothing else is decrypted)."""
    if usage.exceeded:
        raise RateLimitedRead(usage)
    refusal = _refusal(first, now)
    if refusal is not None:
        return refusal, [], []
    scoped = scopes.field_set(first.scope)
    granted = [key for key in json.loads(first.fields) if key in scoped]
    wanted = set(granted)
    if not wanted or first.key_id is None:
        return None, granted, []
    mine = [row for row in rows if row.field_key in wanted and row.field_key in FIELDS]
    return None, granted, mine


def _opened(key: DataKey, first: Any, mine: Sequence[Any], granted: list[str]) -> dict[str, Any]:
    """The rows' values, decrypted, in the order the grant names them."""
    owner = first.individual_id
    values = {
        row.field_key: json.loads(
            key.decrypt(
                bytes(row.value_ct),
                Binding(owner, _TABLE, "value_ct", row.field_id, label=row.field_key),
            )
        )
        for row in mine
    }
    return {name: values[name] for name in granted if name in values}


def _answer(
    rt: Runtime, first: Any, ordered: dict[str, Any], granted: list[str], usage: Usage
) -> ProfileRead:
    return ProfileRead(
        sub=pairwise_subject(rt, first.app_id, first.individual_id),
        fields=ordered,
        granted_fields=granted,
        expires_at=first.expires_at,
        usage=usage,
    )


def _refusal(first: Any, now: datetime) -> InsufficientScope | InvalidToken | None:
    """Why a counted token may not read (its app's own token, a grant that has ended, no
    profile scopes), or None."""
    if first.grant_id is None:
        return InsufficientScope(
            "This token belongs to your app itself (client credentials). Reading personal "
            "data needs a token from an individual's consent (the authorization code flow).",
            scope="openid",
        )
    if (
        first.individual_id is None
        or first.grant_revoked_at is not None
        or (first.expires_at is not None and first.expires_at <= now)
    ):
        return InvalidToken(
            "The individual's permission has ended. Get a new token after they consent again."
        )
    if not scopes.field_set(first.scope):
        return InsufficientScope(
            "This token names no profile fields. Ask for profile:<key> scopes.",
            scope=" ".join(scopes.profile_scopes()),
        )
    return None


def _unknown() -> InvalidToken:
    return InvalidToken(
        "The access token is unknown, expired or revoked, or the individual's permission has "
        "ended. Get a new token."
    )


class RateLimitedRead(Exception):
    """The app is over its read limit (turned into the API's 429 by the endpoint)."""

    def __init__(self, usage: Usage) -> None:
        super().__init__("rate limited")
        self.usage = usage
