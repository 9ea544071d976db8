"""Grants: the one record of who may read what, why, under which terms, until when.

Revoking a grant (or narrowing it to nothing) kills every code and token that points to it
in the same transaction, so the vendor's next call fails.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from consent import scopes
from consent.grants.events import ConsentChangedData, ConsentGrantedData, ConsentRevokedData
from consent.grants.models import AuthorizationCode, Grant, OAuthToken
from consent.ledger.store import record, vendor_pseudonym_for
from consent.terms.catalogue import AGREEMENTS
from consent.vendors.models import VendorApp
from consent.vendors.service import record_vendor_event
from consent.webhooks.outbox import enqueue
from vault.base import utcnow
from vault.crypto import blind_index
from vault.errors import InvalidInput, NotFound
from vault.mail.notices import notify
from vault.profile.catalogue import FIELDS
from vault.runtime import Runtime

DURATIONS: dict[str, tuple[str, timedelta | None]] = {
    "1d": ("1 day", timedelta(days=1)),
    "30d": ("30 days", timedelta(days=30)),
    "1y": ("1 year", timedelta(days=365)),
    "revoked": ("Until I revoke it", None),
}
DEFAULT_DURATION = "30d"


CONSENT_SCREEN = "VRM Vault consent screen v1"
ACCEPTANCE_SCREEN = "VRM Vault offer acceptance v1"


def screen_text_hash(screen: str, app: VendorApp, fields: list[str], agreement_id: str) -> str:
    """SHA-256 of what a screen that asks for consent stated, without any profile value.

    The ledger keeps this hash, so an auditor can later check the wording a person saw
    against the published template without the ledger holding personal data. ``screen`` names
    the template (the consent screen, or the page accepting an offer).
    """

    agreement = AGREEMENTS.get(agreement_id)
    lines = [
        screen,
        f"vendor: {app.name}",
        f"purpose: {app.purpose}",
        "fields: " + ", ".join(FIELDS[key].label for key in fields),
        f"agreement: {agreement.id} v{agreement.version}" if agreement else "agreement: -",
        "durations: " + ", ".join(label for label, _ in DURATIONS.values()),
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def pairwise_subject(rt: Runtime, app_id: uuid.UUID, individual_id: uuid.UUID) -> str:
    """The ``sub`` one app sees for one individual; two apps can't correlate it."""
    mac = blind_index(rt.secrets.blind_index_key, "pairwise-sub", f"{app_id}:{individual_id}")
    return mac.hex()


class _GrantFacts(TypedDict):
    """The keyword arguments of :class:`~consent.grants.events.GrantFields`."""

    grant_id: str
    subject: str
    scopes: list[str]
    purpose: str
    agreement: str
    granted_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def is_active(grant: Grant, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return grant.revoked_at is None and (grant.expires_at is None or grant.expires_at > now)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the individual chose on the consent screen."""

    fields: list[str]
    duration: str


class GrantService:
    def __init__(self, db: Session, rt: Runtime) -> None:
        self.db = db
        self.rt = rt

    def current(self, individual_id: uuid.UUID, app_id: uuid.UUID) -> Grant | None:
        """The grant row for this pair, active or not."""
        return self.db.scalars(
            select(Grant).where(Grant.individual_id == individual_id, Grant.app_id == app_id)
        ).one_or_none()

    def active(self, individual_id: uuid.UUID, app_id: uuid.UUID) -> Grant | None:
        grant = self.current(individual_id, app_id)
        return grant if grant is not None and is_active(grant) else None

    def for_individual(self, individual_id: uuid.UUID) -> list[tuple[Grant, VendorApp]]:
        now = utcnow()
        rows = self.db.execute(
            select(Grant, VendorApp)
            .join(VendorApp, VendorApp.id == Grant.app_id)
            .where(
                Grant.individual_id == individual_id,
                Grant.revoked_at.is_(None),
                or_(Grant.expires_at.is_(None), Grant.expires_at > now),
            )
            .order_by(VendorApp.name)
        ).all()
        return [(grant, app) for grant, app in rows]

    def decide(
        self,
        individual_id: uuid.UUID,
        app: VendorApp,
        decision: Decision,
        agreement_id: str,
        *,
        consent_text_hash: str | None = None,
    ) -> Grant:
        """Record an Allow on the consent screen: create, extend, narrow or widen the grant.

        ``consent_text_hash`` (SHA-256 hex of what the screen said) goes into the ledger entry.
        """
        fields = scopes.check_fields(decision.fields)
        if decision.duration not in DURATIONS:
            raise InvalidInput(
                "Choose how long the vendor may read these fields.", field="duration"
            )
        now = utcnow()
        length = DURATIONS[decision.duration][1]
        expires_at = now + length if length else None
        grant = self.current(individual_id, app.id)
        if grant is not None and not fields and is_active(grant, now):
            # Unticking everything on a new consent screen takes everything back.
            return self.revoke(individual_id, grant.id)
        if grant is None:
            grant = Grant(
                id=uuid.uuid4(),
                individual_id=individual_id,
                app_id=app.id,
                fields=fields,
                purpose=app.purpose,
                agreement_id=agreement_id,
                granted_at=now,
                expires_at=expires_at,
                revoked_at=None,
            )
            self.db.add(grant)
            self.db.flush()
            self._record(app, grant, "grant.given", consent_text_hash)
            enqueue(self.db, app, ConsentGrantedData(**self._about(app, grant)))
            notify(self.db, self.rt, individual_id, "new_connection", app.id, now=now)
            return grant
        was_active = is_active(grant, now)
        old_fields, old_expiry = set(grant.fields), grant.expires_at
        changed = (
            grant.fields != fields
            or grant.expires_at != expires_at
            or grant.agreement_id != agreement_id
            or grant.purpose != app.purpose
        )
        grant.fields = fields
        grant.purpose = app.purpose
        grant.agreement_id = agreement_id
        grant.expires_at = expires_at
        if not was_active:
            # An expired grant's codes and tokens were refused but never revoked; revoke them
            # now, so that consenting again does not bring the old ones back to life.
            self.kill_credentials(grant.id, now)
            grant.revoked_at = None
            grant.expiry_processed_at = None
            grant.granted_at = now
        self.db.flush()
        if not was_active:
            self._record(app, grant, "grant.given", consent_text_hash)
            enqueue(self.db, app, ConsentGrantedData(**self._about(app, grant)))
            notify(self.db, self.rt, individual_id, "new_connection", app.id, now=now)
        elif changed:
            new_fields = set(fields)
            if new_fields < old_fields:
                kind = "grant.narrowed"
            elif new_fields > old_fields:
                kind = "grant.given"
            elif new_fields == old_fields and old_expiry != expires_at:
                kind = "grant.extended"
            else:
                kind = "grant.changed"
            self._record(app, grant, kind, consent_text_hash)
            enqueue(self.db, app, ConsentChangedData(**self._about(app, grant)))
        return grant

    def widen(
        self,
        individual_id: uuid.UUID,
        app: VendorApp,
        fields: list[str],
        *,
        consent_text_hash: str | None = None,
    ) -> Grant:
        """Add fields to the active grant of this pair, keeping its agreement, purpose and end.

        Used when the individual shares more with a vendor it is already connected to (e.g.
        on accepting its offer): the new fields join the connection on its existing terms.
        """
        grant = self.active(individual_id, app.id)
        if grant is None:
            raise NotFound("There is no such connection.")
        new = [f for f in scopes.check_fields(fields) if f not in grant.fields]
        if not new:
            return grant
        grant.fields = scopes.check_fields([*grant.fields, *new])
        self.db.flush()
        self._record(app, grant, "grant.given", consent_text_hash)
        enqueue(self.db, app, ConsentChangedData(**self._about(app, grant)))
        return grant

    def narrow(self, individual_id: uuid.UUID, grant_id: uuid.UUID, remove: list[str]) -> Grant:
        """Remove single fields; removing the last one revokes the grant."""
        grant, app = self._owned(individual_id, grant_id)
        if not is_active(grant):
            raise InvalidInput("This connection has already ended.", field="fields")
        remaining = [f for f in grant.fields if f not in set(remove)]
        if remaining == grant.fields:
            return grant
        if not remaining:
            return self.revoke(individual_id, grant_id)
        # Tokens keep working, but profile reads return only what is still granted.
        grant.fields = remaining
        self.db.flush()
        self._record(app, grant, "grant.narrowed")
        enqueue(self.db, app, ConsentChangedData(**self._about(app, grant)))
        return grant

    def revoke(self, individual_id: uuid.UUID, grant_id: uuid.UUID) -> Grant:
        grant, app = self._owned(individual_id, grant_id)
        if is_active(grant):
            now = utcnow()
            grant.revoked_at = now
            self.kill_credentials(grant.id, now)
            self.db.flush()
            self._record(app, grant, "grant.revoked")
            enqueue(self.db, app, ConsentRevokedData(**self._about(app, grant), reason="revoked"))
        return grant

    def expire_due(self, *, now: datetime | None = None, limit: int = 500) -> int:
        """Grants whose time is up: kill their credentials and tell their vendors, once each.

        Expired grants already fail every check; this makes it explicit and sends
        ``consent.revoked`` with ``"reason": "expired"``. Safe with several workers: each
        grant is claimed with a conditional update.
        """
        now = now or utcnow()
        due = self.db.scalars(
            select(Grant.id)
            .where(
                Grant.revoked_at.is_(None),
                Grant.expires_at <= now,
                Grant.expiry_processed_at.is_(None),
            )
            .limit(limit)
        ).all()
        done = 0
        for grant_id in due:
            claimed = self.db.execute(
                update(Grant)
                .where(
                    Grant.id == grant_id,
                    Grant.expiry_processed_at.is_(None),
                    Grant.revoked_at.is_(None),
                )
                .values(expiry_processed_at=now)
                .execution_options(synchronize_session=False)
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                continue
            self.kill_credentials(grant_id, now)
            row = self.db.execute(
                select(Grant, VendorApp)
                .join(VendorApp, VendorApp.id == Grant.app_id)
                .where(Grant.id == grant_id)
                .execution_options(populate_existing=True)
            ).first()
            if row is not None:
                grant, app = row
                self._record(app, grant, "grant.expired")
                enqueue(
                    self.db, app, ConsentRevokedData(**self._about(app, grant), reason="expired")
                )
            done += 1
        return done

    def kill_credentials(self, grant_id: uuid.UUID, now: datetime | None = None) -> None:
        """Every code and token of the grant stops working, in this transaction."""
        now = now or utcnow()
        self.db.execute(
            update(OAuthToken)
            .where(OAuthToken.grant_id == grant_id, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        # Unredeemed codes are deleted, so presenting one later is "unknown", not a replay.
        self.db.execute(
            delete(AuthorizationCode)
            .where(AuthorizationCode.grant_id == grant_id, AuthorizationCode.used_at.is_(None))
            .execution_options(synchronize_session=False)
        )

    def _owned(self, individual_id: uuid.UUID, grant_id: uuid.UUID) -> tuple[Grant, VendorApp]:
        row = self.db.execute(
            select(Grant, VendorApp)
            .join(VendorApp, VendorApp.id == Grant.app_id)
            .where(Grant.id == grant_id, Grant.individual_id == individual_id)
        ).first()
        if row is None:
            raise NotFound("There is no such connection.")
        return row[0], row[1]

    def _record(
        self, app: VendorApp, grant: Grant, event_type: str, consent_text_hash: str | None = None
    ) -> None:
        """Record the event for the consent ledger, in this transaction (pending until the
        sequencer integrates it)."""

        record(
            self.db,
            {
                "event_type": event_type,
                "vendor_id": str(app.id),
                "subject": vendor_pseudonym_for(self.db, self.rt, grant.individual_id, app.id),
                "grant_id": str(grant.id),
                "fields": list(grant.fields),
                "purpose": grant.purpose,
                "agreement_id": grant.agreement_id,
                "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
                "consent_text_hash": consent_text_hash,
            },
        )

    def _about(self, app: VendorApp, grant: Grant) -> _GrantFacts:
        """What every ``consent.*`` webhook says about the grant."""
        return _GrantFacts(
            grant_id=str(grant.id),
            subject=pairwise_subject(self.rt, app.id, grant.individual_id),
            scopes=[scopes.PROFILE_PREFIX + f for f in grant.fields],
            purpose=grant.purpose,
            agreement=grant.agreement_id,
            granted_at=grant.granted_at,
            expires_at=grant.expires_at,
            revoked_at=grant.revoked_at,
        )


def delete_app(db: Session, app: VendorApp, rt: Runtime | None = None) -> None:
    """Delete the app; its grants, codes, tokens and webhook messages go with it (FK cascade).

    With ``rt``, every active grant is revoked first, so the ledger and each individual's
    history record the end of the connection before the rows go.
    """
    if rt is not None:
        service = GrantService(db, rt)
        for grant in db.scalars(select(Grant).where(Grant.app_id == app.id)).all():
            if is_active(grant):
                service.revoke(grant.individual_id, grant.id)
    record_vendor_event(db, app, "vendor.deleted")
    db.delete(app)
    db.flush()
