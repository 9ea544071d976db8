"""Consent receipts: one signed, offline-verifiable record per grant event.

Each ledger entry of a grant (``grant.given``, ``grant.narrowed``, ``grant.extended``,
``grant.changed``, ``grant.revoked``, ``grant.expired``) yields a receipt carrying the fields
of an ISO/IEC TS 27560 consent record (with the Kantara Consent Receipt names where they map,
listed under ``kantara_names``), and the proof that the event is in the consent ledger: the
exact entry bytes, its leaf hash and index, a signed checkpoint that covers it and the
RFC 9162 inclusion proof from the leaf to that checkpoint's root.

Signature: a JWS in compact serialization, ``alg`` = ``Ed25519`` (RFC 9864), signed with the
ledger's checkpoint key (:func:`consent.ledger.service.signing_key`). ``kid`` is the C2SP
signed-note key ID of that key in hex (``SHA-256(origin || 0x0A || 0x01 || key)[:4]``), the
same id that appears in the verifier key ``vrm ledger public-key`` prints, so the one public key
an auditor holds verifies both checkpoints and receipts. Receipts issued before the vault moved
to RFC 9864's name carry ``alg`` = ``EdDSA`` (RFC 8037, now deprecated) over the same key; they
still verify.

Jurisdiction: the agreements in :mod:`consent.terms` name no jurisdiction and the vault has no
setting for one, so receipts say ``"not specified"`` (:data:`JURISDICTION`) rather than guess.

An event is recorded pending and gets its ledger index when the sequencer integrates it, a
fraction of a second later (:mod:`consent.ledger.store`). Until then the grant's receipt is
:class:`ReceiptPending` (409 with ``Retry-After``): a receipt always names the latest event, so
it is not issued for an older one meanwhile.

Offline verification (:func:`verify_receipt`) needs only the receipt and the verifier key: it
checks the JWS signature, that the embedded entry hashes to the leaf hash and matches the
receipt's fields, that the checkpoint is signed by the key, and that the inclusion proof links
the leaf to the checkpoint's root.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc.errors import JoseError
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.grants.models import Grant
from consent.ledger.checkpoint import (
    CheckpointError,
    VerifierKey,
    key_id,
    parse_signed_note,
    parse_verifier_key,
    verify_signed_checkpoint,
)
from consent.ledger.cosignature import verify_quorum
from consent.ledger.jose import VERIFIED_ALGORITHMS, sign_compact, verify_compact
from consent.ledger.merkle import leaf_hash, verify_inclusion
from consent.ledger.models import LedgerCheckpoint, LedgerEntry, LedgerPending
from consent.ledger.service import checkpoint_at_least, create_checkpoint, origin
from consent.ledger.store import StoredTree, pair_subjects
from consent.ledger.witnessing import cosigned_note, covering_checkpoint
from consent.terms.catalogue import AGREEMENTS
from consent.vendors.models import VendorApp
from vault.base import utcnow
from vault.errors import NotFound, VaultError, VerificationFailed
from vault.runtime import Runtime

RECEIPT_VERSION = "1"
MEDIA_TYPE = "application/jose"
TYP = "consent-receipt+jws"
JURISDICTION = "not specified"
"""No agreement or setting names a jurisdiction; say so rather than invent one."""
COLLECTION_METHOD = "web form consent screen (VRM Vault)"
WITHDRAWAL_METHOD = "revoke on the Connections page of the vault, effective immediately"
GRANT_EVENTS = frozenset(
    {
        "grant.given",
        "grant.narrowed",
        "grant.extended",
        "grant.changed",
        "grant.revoked",
        "grant.expired",
    }
)
KANTARA_NAMES = {
    "consentReceiptID": "record_id",
    "piiPrincipalId": "pii_principal_id",
    "piiControllers": "controller",
    "purposes": "purpose",
    "piiCategory": "pii_categories",
    "jurisdiction": "jurisdiction",
    "collectionMethod": "collection_method",
    "consentTimestamp": "event.time",
    "termination": "withdrawal_method",
    "policyUrl": "agreement.url",
}
"""Kantara Consent Receipt v1.1 field name -> the receipt field that carries it."""


class ReceiptError(VerificationFailed, ValueError):
    """A receipt that does not verify; the message says why."""


class ReceiptPending(VaultError):
    """The grant's latest event is recorded but not yet in the ledger's tree: it has no index
    or proof yet. The sequencer integrates it within about a second."""

    status_code = 409
    code = "receipt_pending"

    def __init__(self, since: str | None) -> None:
        super().__init__(
            "The latest change to this connection is recorded and waiting to be added to the "
            "consent ledger (pending"
            + (f" since {since}" if since else "")
            + "); its receipt is ready within a second or two. Try again shortly.",
            headers={"Retry-After": "1"},
        )
        self.since = since


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _duration(start: datetime, end: datetime | None) -> str | None:
    """The validity as an ISO 8601 duration (``P30D`` or ``PT3600S``); None if open-ended."""
    if end is None:
        return None
    seconds = int((end - start).total_seconds())
    if seconds >= 0 and seconds % 86400 == 0:
        return f"P{seconds // 86400}D"
    return f"PT{max(seconds, 0)}S"


def _state(event_type: str) -> str:
    return {"grant.revoked": "revoked", "grant.expired": "expired"}.get(event_type, "active")


def grant_entries(
    db: Session, grant: Grant, subjects: list[str] | None = None
) -> list[tuple[LedgerEntry, dict[str, Any]]]:
    """The ledger entries of one grant, oldest first, each with its parsed JSON.

    The grant id lives inside the entry JSON, so the query narrows by the indexed vendor id,
    the event type and, given the subjects the person's events with this vendor carry
    (:func:`consent.ledger.store.pair_subjects`), the indexed subject (then it reads only that
    person's entries with that vendor, not all of the vendor's), and the JSON is parsed to
    match the grant exactly.
    """
    query = select(LedgerEntry).where(
        LedgerEntry.vendor_id == grant.app_id,
        LedgerEntry.event_type.in_(sorted(GRANT_EVENTS)),
    )
    if subjects is not None:
        query = query.where(LedgerEntry.subject.in_(subjects))
    rows = db.scalars(query.order_by(LedgerEntry.index)).all()
    found = []
    for row in rows:
        data = json.loads(bytes(row.entry))
        if data.get("grant_id") == str(grant.id):
            found.append((row, data))
    return found


def pending_grant_events(
    db: Session, grant: Grant, subjects: list[str] | None = None
) -> list[dict[str, Any]]:
    """The grant's events that are recorded but not yet integrated (no index), oldest first,
    each as its parsed JSON (with its ``time``, without an ``index``)."""
    query = select(LedgerPending.event).where(
        LedgerPending.vendor_id == grant.app_id,
        LedgerPending.event_type.in_(sorted(GRANT_EVENTS)),
    )
    if subjects is not None:
        query = query.where(LedgerPending.subject.in_(subjects))
    found = []
    for event in db.scalars(query.order_by(LedgerPending.id)):
        data = json.loads(bytes(event))
        if data.get("grant_id") == str(grant.id):
            found.append(data)
    return found


def _covering_checkpoint(db: Session, rt: Runtime, index: int) -> LedgerCheckpoint:
    # With a witness quorum set, the smallest checkpoint a quorum cosigned, when there is one.
    checkpoint = covering_checkpoint(db, rt, index + 1) or checkpoint_at_least(db, index + 1)
    if checkpoint is None:
        checkpoint = create_checkpoint(db, rt) or checkpoint_at_least(db, index + 1)
    if checkpoint is None:  # pragma: no cover - the entry exists, so the tree covers it
        raise RuntimeError(f"no checkpoint covers ledger index {index}")
    return checkpoint


def receipt_payload(
    db: Session, rt: Runtime, grant_id: uuid.UUID, *, index: int | None = None
) -> dict[str, Any]:
    """The unsigned receipt of the grant's latest ledger event (or of the one at ``index``);
    :class:`ReceiptPending` when the latest event is not integrated yet."""
    row = db.execute(
        select(Grant, VendorApp)
        .join(VendorApp, VendorApp.id == Grant.app_id)
        .where(Grant.id == grant_id)
    ).first()
    if row is None:
        raise NotFound("There is no such connection.")
    grant, app = row[0], row[1]

    subjects = pair_subjects(db, rt, grant.individual_id, grant.app_id)
    if index is None:
        pending = pending_grant_events(db, grant, subjects)
        if pending:
            raise ReceiptPending(pending[-1].get("time"))
    entries = grant_entries(db, grant, subjects)
    if index is not None:
        entries = [(e, d) for e, d in entries if e.index == index]
    if not entries:
        raise NotFound("The consent ledger holds no event for this connection.")
    entry, data = entries[-1]
    checkpoint = _covering_checkpoint(db, rt, entry.index)
    proof = StoredTree(db).inclusion(entry.index, checkpoint.size)
    agreement = AGREEMENTS.get(data.get("agreement_id") or grant.agreement_id)
    base = rt.settings.base_url.rstrip("/")
    expires_at = data.get("expires_at")
    granted_at = _iso(grant.granted_at)
    event_time = data.get("time")
    return {
        "receipt_version": RECEIPT_VERSION,
        "standard": "ISO/IEC TS 27560 consent record",
        "record_id": str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{origin(rt)}/receipts/{grant.id}/{entry.index}")
        ),
        "issued_at": _iso(utcnow()),
        "issuer": {"origin": origin(rt), "url": base},
        "grant_id": str(grant.id),
        "pii_principal_id": data.get("subject"),
        "controller": {"id": str(app.id), "name": app.name, "homepage": app.homepage_url},
        "purpose": data.get("purpose"),
        "pii_categories": list(data.get("fields") or []),
        "agreement": {
            "id": data.get("agreement_id"),
            "version": agreement.version if agreement else None,
            "title": agreement.title if agreement else None,
            "url": base + agreement.url if agreement else None,
        },
        "jurisdiction": JURISDICTION,
        "collection_method": COLLECTION_METHOD,
        "event": {
            "type": data.get("event_type"),
            "time": event_time,
            "state": _state(str(data.get("event_type"))),
        },
        "validity": {
            "granted_at": granted_at,
            "expires_at": expires_at,
            "duration": _duration(
                grant.granted_at,
                datetime.fromisoformat(expires_at.replace("Z", "+00:00")) if expires_at else None,
            ),
        },
        "withdrawal_method": WITHDRAWAL_METHOD,
        "consent_text_hash": data.get("consent_text_hash"),
        "kantara_names": KANTARA_NAMES,
        "ledger": {
            "index": entry.index,
            "entry": base64.b64encode(bytes(entry.entry)).decode("ascii"),
            "leaf_hash": bytes(entry.leaf_hash).hex(),
            "tree_size": checkpoint.size,
            "checkpoint": cosigned_note(db, checkpoint),
            "inclusion_proof": [base64.b64encode(h).decode("ascii") for h in proof],
        },
    }


def sign_receipt(rt: Runtime, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sign_compact(rt, body.encode("utf-8"), TYP)


def receipt_for(
    db: Session, rt: Runtime, grant_id: uuid.UUID, *, index: int | None = None
) -> dict[str, Any]:
    """The grant's receipt: ``{"receipt": <compact JWS>, "payload": {...}}``.

    Signs a checkpoint first if none covers the entry yet (in the caller's transaction).
    """
    payload = receipt_payload(db, rt, grant_id, index=index)
    return {"receipt": sign_receipt(rt, payload), "payload": payload}


# -- offline verification -------------------------------------------------------------------


def _verifier(public_key: str | VerifierKey | Ed25519PublicKey, note: str) -> VerifierKey:
    if isinstance(public_key, VerifierKey):
        return public_key
    if isinstance(public_key, str):
        return parse_verifier_key(public_key)
    # A bare key: the signed-note key name is the checkpoint's origin (the log names itself).
    name = parse_signed_note(note)[0].origin
    return VerifierKey(name, key_id(name, public_key), public_key)


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ReceiptError(f"the receipt's {what} is missing")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptError(f"the receipt's {what} is not valid base64") from None


def verify_receipt(
    jws_compact: str,
    public_key: str | VerifierKey | Ed25519PublicKey,
    *,
    witnesses: Sequence[str] = (),
    quorum: int = 0,
) -> dict[str, Any]:
    """Verify a receipt offline and return its payload; raises :class:`ReceiptError`.

    ``public_key`` is the ledger's verifier key text (``vrm ledger public-key``), a parsed
    :class:`VerifierKey`, or the bare Ed25519 public key. With ``quorum`` > 0 the receipt's
    checkpoint must carry valid cosignatures by that many of the trusted ``witnesses``.
    """
    token = jws_compact.strip()
    try:
        header_segment = token.split(".", 1)[0]
        header = json.loads(
            base64.urlsafe_b64decode(header_segment + "=" * (-len(header_segment) % 4))
        )
    except (ValueError, binascii.Error):
        raise ReceiptError("the receipt is not a compact JWS") from None
    if not isinstance(header, dict) or header.get("alg") not in VERIFIED_ALGORITHMS:
        raise ReceiptError("the receipt must be signed with Ed25519 (or EdDSA, as older ones are)")
    if header.get("typ") != TYP:
        raise ReceiptError(
            f"this is not a consent receipt (its typ is {header.get('typ')!r}, not {TYP!r})"
        )
    try:
        if isinstance(public_key, str):
            raw_key = parse_verifier_key(public_key).public_key
        elif isinstance(public_key, VerifierKey):
            raw_key = public_key.public_key
        else:
            raw_key = public_key
    except CheckpointError as exc:
        raise ReceiptError(f"the public key is not usable: {exc}") from None
    try:
        obj = verify_compact(token, raw_key)
    except (JoseError, ValueError):
        raise ReceiptError("the receipt's signature does not verify with this key") from None
    try:
        payload = json.loads(obj.payload)
    except ValueError:
        raise ReceiptError("the receipt's payload is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("ledger"), dict):
        raise ReceiptError("the receipt carries no ledger proof")
    ledger = payload["ledger"]
    note = ledger.get("checkpoint")
    if not isinstance(note, str):
        raise ReceiptError("the receipt carries no checkpoint")
    try:
        vkey = _verifier(public_key, note)
        if header.get("kid") != vkey.key_id.hex():
            raise ReceiptError("the receipt's kid is not the id of this key")
        checkpoint = verify_signed_checkpoint(note, vkey)
    except CheckpointError as exc:
        raise ReceiptError(f"the receipt's checkpoint does not verify: {exc}") from None
    if witnesses or quorum:
        try:
            verify_quorum(note, vkey, witnesses, quorum)
        except CheckpointError as exc:
            raise ReceiptError(f"the receipt's checkpoint is not witnessed: {exc}") from None
    entry_bytes = _b64(ledger.get("entry"), "ledger entry")
    digest = leaf_hash(entry_bytes)
    if digest.hex() != ledger.get("leaf_hash"):
        raise ReceiptError("the ledger entry does not hash to the receipt's leaf hash")
    index, size = ledger.get("index"), ledger.get("tree_size")
    if not isinstance(index, int) or size != checkpoint.size:
        raise ReceiptError("the receipt's tree size is not the checkpoint's")
    proof_items = ledger.get("inclusion_proof")
    if not isinstance(proof_items, list):
        raise ReceiptError("the receipt carries no inclusion proof")
    proof = [_b64(item, "inclusion proof") for item in proof_items]
    if not verify_inclusion(digest, index, checkpoint.size, proof, checkpoint.root):
        raise ReceiptError("the inclusion proof does not link the entry to the checkpoint root")
    try:
        entry = json.loads(entry_bytes)
    except ValueError:
        raise ReceiptError("the ledger entry is not JSON") from None
    if not isinstance(entry, dict):
        raise ReceiptError("the ledger entry is not a JSON object")
    expected = {
        "index": index,
        "grant_id": payload.get("grant_id"),
        "subject": payload.get("pii_principal_id"),
        "event_type": (payload.get("event") or {}).get("type"),
        "fields": payload.get("pii_categories"),
        "purpose": payload.get("purpose"),
        "agreement_id": (payload.get("agreement") or {}).get("id"),
        "vendor_id": (payload.get("controller") or {}).get("id"),
    }
    for key, value in expected.items():
        if entry.get(key) != value:
            raise ReceiptError(f"the receipt's {key} does not match the ledger entry")
    return payload
