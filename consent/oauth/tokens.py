"""Access and refresh tokens: issued, looked up by keyed hash, rotated, revoked."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from consent.grants.access import TokenContext
from consent.grants.models import Grant, OAuthToken
from consent.grants.service import is_active
from consent.oauth.events import record_event
from consent.vendors.models import VendorApp
from vault.base import utcnow
from vault.crypto import hash_token, new_token
from vault.runtime import Runtime

ACCESS_TOKEN_SECONDS = 600
REFRESH_TOKEN_DAYS = 30


class TokenService:
    def __init__(self, db: Session, rt: Runtime) -> None:
        self.db = db
        self.rt = rt

    def _hash(self, token: str) -> bytes:
        return hash_token(self.rt.secrets.token_hash_key, token)

    def issue(
        self,
        app: VendorApp,
        scope: str,
        *,
        grant: Grant | None,
        family_id: uuid.UUID | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        expires_in: int = ACCESS_TOKEN_SECONDS,
    ) -> OAuthToken:
        now = utcnow()
        row = OAuthToken(
            id=uuid.uuid4(),
            app_id=app.id,
            grant_id=grant.id if grant else None,
            family_id=family_id or uuid.uuid4(),
            access_token_hash=self._hash(access_token or new_token()),
            refresh_token_hash=self._hash(refresh_token) if refresh_token else None,
            scope=scope,
            issued_at=now,
            access_expires_at=now + timedelta(seconds=expires_in),
            refresh_expires_at=now + timedelta(days=REFRESH_TOKEN_DAYS) if refresh_token else None,
            refreshed_at=None,
            revoked_at=None,
        )
        self.db.add(row)
        self.db.flush()
        return row

    def by_access_token(self, token: str) -> OAuthToken | None:
        if not token or len(token) > 200:
            return None
        return self.db.scalars(
            select(OAuthToken).where(OAuthToken.access_token_hash == self._hash(token))
        ).one_or_none()

    def by_refresh_token(self, token: str) -> OAuthToken | None:
        if not token or len(token) > 200:
            return None
        return self.db.scalars(
            select(OAuthToken).where(OAuthToken.refresh_token_hash == self._hash(token))
        ).one_or_none()

    def context(self, row: OAuthToken) -> TokenContext | None:
        """The token's app and grant if the access token is usable now, else None."""
        now = utcnow()
        if row.revoked_at is not None or row.access_expires_at <= now:
            return None
        app = self.db.get(VendorApp, row.app_id)
        if app is None:
            return None
        grant = None
        if row.grant_id is not None:
            grant = self.db.get(Grant, row.grant_id)
            if grant is None or not is_active(grant, now):
                return None
        return TokenContext(row, app, grant)

    def validate_access_token(self, token: str) -> TokenContext | None:
        """The token's app and grant if the access token is usable now, else None. The token
        and its app come in one statement (every vendor request starts here)."""
        if not token or len(token) > 200:
            return None
        found = self.db.execute(
            select(OAuthToken, VendorApp)
            .join(VendorApp, VendorApp.id == OAuthToken.app_id)
            .where(OAuthToken.access_token_hash == self._hash(token))
        ).one_or_none()
        return self.context(found[0]) if found is not None else None

    def claim_refresh(self, row: OAuthToken) -> bool:
        """Mark a refresh token used, atomically. False: it was used already (reuse)."""
        result = self.db.execute(
            update(OAuthToken)
            .where(
                OAuthToken.id == row.id,
                OAuthToken.refreshed_at.is_(None),
                OAuthToken.revoked_at.is_(None),
            )
            .values(refreshed_at=utcnow(), revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def revoke_family(self, family_id: uuid.UUID, now: datetime | None = None) -> int:
        result = self.db.execute(
            update(OAuthToken)
            .where(OAuthToken.family_id == family_id, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=now or utcnow())
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def reuse_detected(self, row: OAuthToken) -> None:
        """An already-rotated refresh token came back: revoke its whole family, and record
        that once per family (the first reuse; later ones change nothing and record nothing)."""
        self.revoke_family(row.family_id)
        record_event(
            self.db,
            "token.reuse_detected",
            family_id=row.family_id,
            app_id=row.app_id,
            grant_id=row.grant_id,
            rt=self.rt,
        )
