"""The profile read (``GET /vendor/v1/profile``): the vendor API's hottest path, in one hop to
a worker thread, one query, one insert and one commit.

The token, its grant, the individual's data key and their filled-in standard fields come back
in one statement (a join on the token's keyed hash), so the grant is checked in the very
transaction that reads the values: a revocation that committed before is in force, whichever
process committed it. The data key is unwrapped once per process (``vault.keystore.UNWRAPPED``)
and only the fields this token may read are decrypted. The read is written to the access log
in the same transaction, so no read goes unlogged.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select

from consent import scopes
from consent.grants.models import AccessLogEntry, Grant, OAuthToken
from consent.grants.service import pairwise_subject
from consent.vendors.ratelimit import READ, Limiter, Usage
from vault.base import utcnow
from vault.crypto import Binding, hash_token
from vault.keystore import UNWRAPPED, DataKeyRecord
from vault.profile.catalogue import FIELDS
from vault.profile.models import ProfileField
from vault.runtime import Runtime
from vendor_api.errors import InsufficientScope, InvalidToken

_TABLE = ProfileField.__tablename__

_READ = (
    select(
        OAuthToken.app_id,
        OAuthToken.grant_id,
        OAuthToken.scope,
        OAuthToken.access_expires_at,
        OAuthToken.revoked_at,
        Grant.individual_id,
        Grant.fields,
        Grant.expires_at,
        Grant.revoked_at.label("grant_revoked_at"),
        DataKeyRecord.id.label("key_id"),
        DataKeyRecord.kek_id,
        DataKeyRecord.wrapped,
        ProfileField.id.label("field_id"),
        ProfileField.field_key,
        ProfileField.value_ct,
    )
    .select_from(OAuthToken)
    .outerjoin(Grant, Grant.id == OAuthToken.grant_id)
    .outerjoin(DataKeyRecord, DataKeyRecord.owner_id == Grant.individual_id)
    .outerjoin(ProfileField, ProfileField.owner_id == Grant.individual_id)
    .where(OAuthToken.access_token_hash == bindparam("token_hash"))
)
"""Built once: each read only binds the token's hash (no statement to build or key to
compute per request)."""


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
    token: str,
    limit: int,
    counted: Callable[[Usage], None],
) -> ProfileRead:
    """The fields ``token`` may read now, logged as one read; raises the API's errors.

    ``counted`` hears the app's usage as soon as the request is counted (errors after that
    carry the rate-limit headers too). Blocking (database, key provider): call it from a
    worker thread.
    """
    if not token or len(token) > 200:
        raise _unknown()
    now = utcnow()
    # The runtime's sessions, not the engine: tests bind them to a connection of their own.
    with rt.sessions() as session, session.begin():
        conn = session.connection()
        rows = conn.execute(
            _READ, {"token_hash": hash_token(rt.secrets.token_hash_key, token)}
        ).all()
        if not rows:
            raise _unknown()
        first = rows[0]
        if first.revoked_at is not None or first.access_expires_at <= now:
            raise _unknown()
        usage = limiter.hit(first.app_id, READ, limit, now=now, conn=conn)
        counted(usage)
        if usage.exceeded:
            raise RateLimitedRead(usage)
        if first.grant_id is None:
            raise InsufficientScope(
                "This token belongs to your app itself (client credentials). Reading personal "
                "data needs a token from an individual's consent (the authorization code flow).",
                scope="openid",
            )
        if (
            first.individual_id is None
            or first.grant_revoked_at is not None
            or (first.expires_at is not None and first.expires_at <= now)
        ):
            raise InvalidToken(
                "The individual's permission has ended. Get a new token after they consent again."
            )
        scoped = set(scopes.fields_in(first.scope))
        if not scoped:
            raise InsufficientScope(
                "This token names no profile fields. Ask for profile:<key> scopes.",
                scope=" ".join(scopes.profile_scopes()),
            )
        granted = [key for key in first.fields if key in scoped]
        values = _decrypt(rt, rows, set(granted))
        ordered = {key: values[key] for key in granted if key in values}
        if ordered:
            conn.execute(
                insert(AccessLogEntry).values(
                    id=uuid.uuid4(),
                    individual_id=first.individual_id,
                    app_id=first.app_id,
                    fields=list(ordered),
                    accessed_at=now,
                )
            )
    return ProfileRead(
        sub=pairwise_subject(rt, first.app_id, first.individual_id),
        fields=ordered,
        granted_fields=granted,
        expires_at=first.expires_at,
        usage=usage,
    )


def _decrypt(rt: Runtime, rows: Sequence[Any], wanted: set[str]) -> dict[str, Any]:
    """The wanted fields' values; nothing else is decrypted."""
    mine = [row for row in rows if row.field_key in wanted and row.field_key in FIELDS]
    if not mine:
        return {}
    first = mine[0]
    key = UNWRAPPED.open(rt.keys, first.key_id, first.individual_id, first.kek_id, first.wrapped)
    return {
        row.field_key: json.loads(
            key.decrypt(
                bytes(row.value_ct),
                Binding(row.individual_id, _TABLE, "value_ct", row.field_id, label=row.field_key),
            )
        )
        for row in mine
    }


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
