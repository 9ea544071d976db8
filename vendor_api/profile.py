"""The profile read (``GET /vendor/v1/profile``): the vendor API's hottest path, in one hop to
a worker thread and at most three statements, each its own transaction (no BEGIN/COMMIT).

The token, its grant, the individual's data key and stored fields come back from one
statement (a join on the token's keyed hash, a row per field): the grant is checked in the
very snapshot that reads the values, so a revocation that committed before is in force,
whichever process committed it. Then the app's rate-limit count (Redis, or one statement)
and the access-log row. The data key is unwrapped once per process
(``vault.keystore.UNWRAPPED``) and only the fields this token may read are decrypted. The
read goes to the access log through the app's
:class:`~consent.grants.recorder.AccessRecorder`: in batches while the app runs, or as a
committed row before the answer is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from consent import scopes
from consent.grants.models import Grant, OAuthToken
from consent.grants.recorder import AccessRecorder
from consent.grants.service import pairwise_subject
from consent.vendors.models import VendorApp
from consent.vendors.ratelimit import READ, Limiter, Usage
from vault.base import utcnow
from vault.crypto import Binding, hash_token
from vault.db import autocommit
from vault.keystore import UNWRAPPED, DataKeyRecord
from vault.profile.catalogue import FIELDS
from vault.profile.models import ProfileField
from vault.runtime import Runtime
from vendor_api.errors import InsufficientScope, InvalidToken

_TABLE = ProfileField.__tablename__

_READ = (
    select(
        OAuthToken.app_id,
        VendorApp.name.label("app_name"),
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
    .join(VendorApp, VendorApp.id == OAuthToken.app_id)
    .outerjoin(Grant, Grant.id == OAuthToken.grant_id)
    .outerjoin(DataKeyRecord, DataKeyRecord.owner_id == Grant.individual_id)
    .outerjoin(ProfileField, ProfileField.owner_id == Grant.individual_id)
    .where(OAuthToken.access_token_hash == bindparam("token_hash"))
)
"""The token, its app's name (for the access log), its grant, the individual's data key and
stored fields (a dozen small rows; only the readable ones are opened): one statement, a row
per field, the token's columns on each. Built once; each read only binds the token's hash.
One statement is one snapshot: the grant checked is the grant whose fields are read."""


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
    worker thread.
    """
    if not token or len(token) > 200:
        raise _unknown()
    now = utcnow()
    # Each step is one statement (the read, the rate-limit count, the access-log row), so
    # each is its own transaction: no BEGIN/COMMIT round trips. A count or a read is committed
    # as soon as it is made, so a refusal after the count still counts.
    with autocommit(rt.sessions) as conn:
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
        refusal = _refusal(first, now)
        if refusal is None:
            scoped = set(scopes.fields_in(first.scope))
            granted = [key for key in first.fields if key in scoped]
            values = _decrypt(rt, rows, set(granted))
            ordered = {key: values[key] for key in granted if key in values}
            if ordered:
                recorder.record(
                    conn, first.individual_id, first.app_id, first.app_name, list(ordered), now
                )
    if refusal is not None:
        raise refusal
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
    if not scopes.fields_in(first.scope):
        return InsufficientScope(
            "This token names no profile fields. Ask for profile:<key> scopes.",
            scope=" ".join(scopes.profile_scopes()),
        )
    return None


def _decrypt(rt: Runtime, rows: Sequence[Any], wanted: set[str]) -> dict[str, Any]:
    """The wanted fields' values; nothing else is decrypted."""
    first = rows[0]
    if not wanted or first.key_id is None:
        return {}
    mine = [row for row in rows if row.field_key in wanted and row.field_key in FIELDS]
    if not mine:
        return {}
    key = UNWRAPPED.open(rt.keys, first.key_id, first.individual_id, first.kek_id, first.wrapped)
    owner = first.individual_id
    return {
        row.field_key: json.loads(
            key.decrypt(
                bytes(row.value_ct),
                Binding(owner, _TABLE, "value_ct", row.field_id, label=row.field_key),
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
