"""What vendors read: profile reads under an access token, and the access log of each read.

:func:`read_profile_for` is the one way a vendor reads personal data (the vendor API's
``/vendor/v1/profile`` and the OIDC userinfo endpoint both use it): it returns only the fields
the grant still allows *and* the token's scope names, decrypts nothing else, and writes an
:class:`~consent.models.AccessLogEntry` in the caller's transaction, so a read the individual
cannot see cannot happen.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from consent import scopes
from consent.grants.models import AccessLogEntry, Grant, OAuthToken
from consent.grants.service import is_active
from consent.vendors.models import VendorApp
from vault.base import utcnow
from vault.errors import NotFound
from vault.profile.service import ProfileService
from vault.runtime import Runtime


@dataclass(frozen=True, slots=True)
class TokenContext:
    """A live access token with what it stands for."""

    token: OAuthToken
    app: VendorApp
    grant: Grant | None

    @property
    def scopes(self) -> set[str]:
        return set(self.token.scope.split())


class AccessSummary(NamedTuple):
    reads: int
    last_read_at: datetime | None


def readable_fields(ctx: TokenContext) -> list[str]:
    """The fields this token may read now: the grant's fields that its scope also names."""
    if ctx.grant is None or not is_active(ctx.grant):
        return []
    scoped = scopes.field_set(ctx.token.scope)
    return [key for key in ctx.grant.fields if key in scoped]


def read_profile_for(db: Session, rt: Runtime, ctx: TokenContext) -> dict[str, Any]:
    """The granted fields' values (``{key: value}``), logged as one read.

    Fields granted but not filled in are absent. A token without a grant reads nothing. Only
    a read that returned at least one value is logged: nothing personal was read otherwise.
    """
    fields = readable_fields(ctx)
    if ctx.grant is None or not fields:
        return {}
    values = ProfileService(db, rt).values(ctx.grant.individual_id, fields)
    if values:
        log_access(db, ctx.grant.individual_id, ctx.app, list(values))
    return values


def log_access(
    db: Session,
    individual_id: uuid.UUID,
    app: VendorApp,
    fields: list[str],
    *,
    now: datetime | None = None,
) -> AccessLogEntry:
    """Record that an app read these fields (in the caller's transaction), with the app's
    name, which the row keeps after the app is deleted."""
    entry = AccessLogEntry(
        id=uuid.uuid4(),
        individual_id=individual_id,
        app_id=app.id,
        app_name=app.name,
        fields=list(fields),
        accessed_at=now or utcnow(),
    )
    db.add(entry)
    db.flush()
    return entry


def access_summary(db: Session, individual_id: uuid.UUID) -> dict[uuid.UUID, AccessSummary]:
    """Per app: how many reads of this individual's data, and the latest one (the apps that
    were deleted since are in :func:`deleted_app_reads`)."""
    rows = db.execute(
        select(AccessLogEntry.app_id, func.count(), func.max(AccessLogEntry.accessed_at))
        .where(AccessLogEntry.individual_id == individual_id)
        .group_by(AccessLogEntry.app_id)
    ).all()
    return {
        app_id: AccessSummary(int(count), last)
        for app_id, count, last in rows
        if app_id is not None
    }


def access_log(
    db: Session,
    individual_id: uuid.UUID,
    app_id: uuid.UUID,
    *,
    limit: int = 50,
    offset: int = 0,
) -> list[AccessLogEntry]:
    """One app's reads of one individual's data, newest first."""
    return list(
        db.scalars(
            select(AccessLogEntry)
            .where(AccessLogEntry.individual_id == individual_id, AccessLogEntry.app_id == app_id)
            .order_by(AccessLogEntry.accessed_at.desc(), AccessLogEntry.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )


class DeletedAppReads(NamedTuple):
    app_name: str
    reads: int
    last_read_at: datetime | None


def deleted_app_reads(db: Session, individual_id: uuid.UUID) -> list[DeletedAppReads]:
    """Per deleted app (by the name it had): its reads of this individual's data, the app
    with the latest read first."""
    rows = db.execute(
        select(AccessLogEntry.app_name, func.count(), func.max(AccessLogEntry.accessed_at))
        .where(AccessLogEntry.individual_id == individual_id, AccessLogEntry.app_id.is_(None))
        .group_by(AccessLogEntry.app_name)
        .order_by(func.max(AccessLogEntry.accessed_at).desc())
    ).all()
    return [DeletedAppReads(name, int(count), last) for name, count, last in rows]


def deleted_apps_log(
    db: Session, individual_id: uuid.UUID, *, limit: int = 50, offset: int = 0
) -> list[AccessLogEntry]:
    """The reads of this individual's data by apps that were deleted since, newest first."""
    return list(
        db.scalars(
            select(AccessLogEntry)
            .where(AccessLogEntry.individual_id == individual_id, AccessLogEntry.app_id.is_(None))
            .order_by(AccessLogEntry.accessed_at.desc(), AccessLogEntry.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )


def owned_grant(
    db: Session, individual_id: uuid.UUID, grant_id: uuid.UUID
) -> tuple[Grant, VendorApp]:
    """A grant of this individual (active or not) and its app; anyone else's is not found."""
    row = db.execute(
        select(Grant, VendorApp)
        .join(VendorApp, VendorApp.id == Grant.app_id)
        .where(Grant.id == grant_id, Grant.individual_id == individual_id)
    ).first()
    if row is None:
        raise NotFound("There is no such connection.")
    return row[0], row[1]


def ended_grants(db: Session, individual_id: uuid.UUID) -> list[tuple[Grant, VendorApp]]:
    """This individual's revoked or expired grants, most recently ended first."""
    now = utcnow()
    rows = db.execute(
        select(Grant, VendorApp)
        .join(VendorApp, VendorApp.id == Grant.app_id)
        .where(
            Grant.individual_id == individual_id,
            or_(
                Grant.revoked_at.is_not(None),
                and_(Grant.expires_at.is_not(None), Grant.expires_at <= now),
            ),
        )
    ).all()
    ended = [(grant, app) for grant, app in rows]
    ended.sort(key=lambda row: ended_at(row[0]) or now, reverse=True)
    return ended


def ended_at(grant: Grant) -> datetime | None:
    """When a grant stopped (revoked, or expired), or None while it is active."""
    if grant.revoked_at is not None:
        return grant.revoked_at
    if grant.expires_at is not None and grant.expires_at <= utcnow():
        return grant.expires_at
    return None
