"""Consent receipts: signed (JWS, Ed25519; EdDSA before RFC 9864), carrying the ledger proof,
verifiable offline."""

from __future__ import annotations

import base64
import dataclasses
import json
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jws as joserfc_jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from consent.grants.receipts import TYP, ReceiptError, receipt_for, verify_receipt
from consent.grants.service import GrantService
from consent.ledger.checkpoint import key_id, parse_verifier_key, verify_signed_checkpoint
from consent.ledger.merkle import verify_inclusion
from consent.ledger.models import LedgerCheckpoint
from consent.ledger.service import origin, public_key_text, signing_key
from consent.terms.catalogue import AGREEMENTS
from tests.consent.factories import bearer, connect, individual, make_app
from tests.helpers import sign_up
from tests.sequencer import sequence
from vault.runtime import Runtime
from vrm.app import create_app
from vrm.cli import app as cli_app


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_grant_yields_a_receipt_that_verifies_offline(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt)
    app = make_app(db, name="Acme Shoes", purpose="Send the shoes you order.")
    grant = connect(db, rt, person, app, ["phone", "shoe_size"], agreement="no-tracking")
    sequence(db)  # the worker integrates the pending event

    signed = receipt_for(db, rt, grant.id)["receipt"]
    vkey = public_key_text(rt)
    payload = verify_receipt(signed, vkey)

    header = json.loads(_unb64url(signed.split(".")[0]))
    assert header["alg"] == "Ed25519"
    assert header["kid"] == key_id(origin(rt), parse_verifier_key(vkey).public_key).hex()
    assert payload["grant_id"] == str(grant.id)
    assert payload["pii_principal_id"].startswith("p-")
    assert payload["controller"] == {
        "id": str(app.id),
        "name": "Acme Shoes",
        "homepage": "https://shop.example",
    }
    assert payload["purpose"] == grant.purpose == "Send the shoes you order."
    assert payload["pii_categories"] == grant.fields
    agreement = AGREEMENTS["no-tracking"]
    assert payload["agreement"]["id"] == "no-tracking"
    assert payload["agreement"]["version"] == agreement.version
    assert payload["agreement"]["title"] == agreement.title
    assert payload["event"]["type"] == "grant.given"
    assert payload["event"]["state"] == "active"
    assert payload["validity"]["expires_at"] is not None
    assert payload["validity"]["duration"] == "P30D"
    for key in ("record_id", "jurisdiction", "collection_method", "withdrawal_method"):
        assert payload[key]
    assert payload["kantara_names"]["piiPrincipalId"] == "pii_principal_id"
    # The bare Ed25519 public key verifies it too.
    assert (
        verify_receipt(signed, parse_verifier_key(vkey).public_key)["record_id"]
        == (payload["record_id"])
    )


def test_new_receipt_verifies_with_jwcrypto_and_joserfc_without_a_warning(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    """RFC 9864's fully specified ``Ed25519``: two independent JOSE libraries verify a new
    receipt with the ledger's public key, and joserfc (which warns on ``EdDSA``) stays quiet."""
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["email"])
    sequence(db)  # the worker integrates the pending event
    signed = receipt_for(db, rt, grant.id)["receipt"]
    public_key = parse_verifier_key(public_key_text(rt)).public_key

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        by_jwcrypto = jwcrypto_jws.JWS()
        by_jwcrypto.deserialize(signed)
        by_jwcrypto.verify(jwcrypto_jwk.JWK.from_pyca(public_key), alg="Ed25519")
        by_joserfc = joserfc_jws.deserialize_compact(
            signed, OKPKey.import_key(public_key), algorithms=["Ed25519"]
        )

    assert by_jwcrypto.jose_header["alg"] == by_joserfc.protected["alg"] == "Ed25519"
    assert json.loads(by_jwcrypto.payload) == json.loads(by_joserfc.payload)
    assert json.loads(by_joserfc.payload)["grant_id"] == str(grant.id)


def _eddsa_receipt(rt: Runtime, payload: dict[str, object]) -> str:
    """A receipt as the vault signed them before RFC 9864: ``alg`` ``EdDSA``, same key, same
    ``typ`` and ``kid``, built by hand (no JOSE library)."""
    kid = key_id(origin(rt), signing_key(rt).public_key()).hex()
    header = json.dumps({"alg": "EdDSA", "typ": TYP, "kid": kid}, separators=(",", ":"))
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signing_input = f"{_b64url(header.encode())}.{_b64url(body.encode())}"
    signature = signing_key(rt).sign(signing_input.encode("ascii"))
    return f"{signing_input}.{_b64url(signature)}"


def test_receipt_signed_with_eddsa_before_the_change_still_verifies(
    client: TestClient, db: Session, rt: Runtime, tmp_path: Path
) -> None:
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["email", "phone"])
    sequence(db)  # the worker integrates the pending event
    payload = receipt_for(db, rt, grant.id)["payload"]
    old = _eddsa_receipt(rt, payload)
    vkey = public_key_text(rt)
    # What the project's verifier now spares its users: joserfc's warning on the old name.
    with pytest.warns(SecurityWarning, match="EdDSA is deprecated"):
        joserfc_jws.deserialize_compact(
            old, OKPKey.import_key(parse_verifier_key(vkey).public_key), algorithms=["EdDSA"]
        )

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert verify_receipt(old, vkey)["record_id"] == payload["record_id"]
    receipt = tmp_path / "old-receipt.jws"
    receipt.write_text(old + "\n")
    key = tmp_path / "ledger.pub"
    key.write_text(vkey + "\n")
    result = CliRunner().invoke(
        cli_app, ["ledger", "verify-receipt", str(receipt), "--public-key", str(key)]
    )
    assert result.exit_code == 0, result.output
    assert f"OK: receipt {payload['record_id']}" in result.output

    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(ReceiptError, match="signature"):
        verify_receipt(old, other)
    header, body, signature = old.split(".")
    forged = ".".join([_b64url(_unb64url(header).replace(b"EdDSA", b"ES256")), body, signature])
    with pytest.raises(ReceiptError, match="must be signed with Ed25519"):
        verify_receipt(forged, vkey)


def test_inclusion_proof_links_the_entry_to_the_checkpoint_root(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["email"])
    sequence(db)  # the worker integrates the pending event

    ledger = receipt_for(db, rt, grant.id)["payload"]["ledger"]

    checkpoint = verify_signed_checkpoint(ledger["checkpoint"], public_key_text(rt))
    assert checkpoint.size == ledger["tree_size"] > ledger["index"]
    proof = [base64.b64decode(h) for h in ledger["inclusion_proof"]]
    leaf = bytes.fromhex(ledger["leaf_hash"])
    assert verify_inclusion(leaf, ledger["index"], checkpoint.size, proof, checkpoint.root)
    assert not verify_inclusion(bytes(32), ledger["index"], checkpoint.size, proof, checkpoint.root)


def test_tampering_breaks_verification(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["email", "phone"])
    sequence(db)  # the worker integrates the pending event
    signed = receipt_for(db, rt, grant.id)["receipt"]
    vkey = public_key_text(rt)
    header, body, signature = signed.split(".")

    payload = json.loads(_unb64url(body))
    payload["pii_categories"] = ["email"]
    forged = ".".join([header, _b64url(json.dumps(payload).encode()), signature])
    with pytest.raises(ReceiptError, match="signature"):
        verify_receipt(forged, vkey)

    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(ReceiptError):
        verify_receipt(signed, other)


def test_receipt_checks_the_ledger_proof_not_only_the_signature(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    """A receipt signed by the right key whose proof does not match is still refused."""
    from consent.grants import receipts

    person = individual(client, db, rt)
    connect(db, rt, person, make_app(db, name="Earlier"), ["email"])
    sequence(db)  # the worker integrates the pending event
    grant = connect(db, rt, person, make_app(db), ["email", "phone"])
    sequence(db)  # the worker integrates the pending event
    payload = receipts.receipt_for(db, rt, grant.id)["payload"]
    vkey = public_key_text(rt)

    wrong_fields = {**payload, "pii_categories": ["email"]}
    with pytest.raises(ReceiptError, match="fields"):
        verify_receipt(receipts.sign_receipt(rt, wrong_fields), vkey)

    bad_leaf = {**payload, "ledger": {**payload["ledger"], "leaf_hash": "00" * 32}}
    with pytest.raises(ReceiptError, match="leaf hash"):
        verify_receipt(receipts.sign_receipt(rt, bad_leaf), vkey)

    ledger = payload["ledger"]
    assert ledger["inclusion_proof"]
    bad_proof = {
        **payload,
        "ledger": {
            **ledger,
            "inclusion_proof": [base64.b64encode(bytes(32)).decode()]
            * len(ledger["inclusion_proof"]),
        },
    }
    with pytest.raises(ReceiptError, match="inclusion proof"):
        verify_receipt(receipts.sign_receipt(rt, bad_proof), vkey)


def test_narrowed_grant_yields_a_receipt_for_the_new_index(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["email", "phone"])
    sequence(db)  # the worker integrates the pending event
    first = verify_receipt(receipt_for(db, rt, grant.id)["receipt"], public_key_text(rt))

    GrantService(db, rt).narrow(person.id, grant.id, ["phone"])
    sequence(db)  # the worker integrates the pending event
    db.commit()
    second = verify_receipt(receipt_for(db, rt, grant.id)["receipt"], public_key_text(rt))

    assert second["ledger"]["index"] > first["ledger"]["index"]
    assert second["ledger"]["tree_size"] > second["ledger"]["index"]
    assert second["event"]["type"] == "grant.narrowed"
    assert second["pii_categories"] == ["email"]
    assert second["record_id"] != first["record_id"]
    # The earlier event's receipt is still available by its index.
    again = receipt_for(db, rt, grant.id, index=first["ledger"]["index"])["payload"]
    assert again["record_id"] == first["record_id"]

    GrantService(db, rt).revoke(person.id, grant.id)
    sequence(db)  # the worker integrates the pending event
    db.commit()
    third = verify_receipt(receipt_for(db, rt, grant.id)["receipt"], public_key_text(rt))
    assert third["event"] == {**third["event"], "type": "grant.revoked", "state": "revoked"}


def test_individual_downloads_own_receipt_and_others_get_404(
    client: TestClient, app: FastAPI, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["email"])
    sequence(db)  # the worker integrates the pending event

    page = client.get("/connections").text
    assert f'href="/connections/{grant.id}/receipt"' in page
    response = client.get(f"/connections/{grant.id}/receipt")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jose")
    assert f'filename="receipt-{grant.id}.jws"' in response.headers["content-disposition"]
    assert verify_receipt(response.text, public_key_text(rt))["grant_id"] == str(grant.id)

    with TestClient(app, base_url="http://testserver", follow_redirects=False) as other:
        sign_up(other)
        assert other.get(f"/connections/{grant.id}/receipt").status_code == 404
        assert other.get("/connections/not-a-uuid/receipt").status_code == 404


def test_vendor_fetches_receipts_of_its_own_grants_only(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt)
    shop = make_app(db, name="Shop")
    rival = make_app(db, name="Rival")
    grant = connect(db, rt, person, shop, ["email"])
    sequence(db)  # the worker integrates the pending event
    rival_grant = connect(db, rt, person, rival, ["phone"])
    sequence(db)  # the worker integrates the pending event
    headers = bearer(db, rt, shop, grant)

    response = client.get(f"/vendor/v1/receipts/{grant.id}", headers=headers)

    assert response.status_code == 200, response.text
    payload = verify_receipt(response.json()["receipt"], public_key_text(rt))
    assert payload["controller"]["id"] == str(shop.id)
    assert client.get(f"/vendor/v1/receipts/{rival_grant.id}", headers=headers).status_code == 404
    assert client.get("/vendor/v1/receipts/nope", headers=headers).status_code == 404
    assert client.get(f"/vendor/v1/receipts/{grant.id}").status_code == 401

    # After revocation the app's own (client credentials) token still fetches the receipt.
    GrantService(db, rt).revoke(person.id, grant.id)
    sequence(db)  # the worker integrates the pending event
    db.commit()
    app_headers = bearer(db, rt, shop, None, scope="")
    revoked = client.get(f"/vendor/v1/receipts/{grant.id}", headers=app_headers)
    assert revoked.status_code == 200, revoked.text
    assert verify_receipt(revoked.json()["receipt"], public_key_text(rt))["event"]["state"] == (
        "revoked"
    )


def test_cli_verifies_a_receipt_offline(
    client: TestClient, db: Session, rt: Runtime, tmp_path: Path
) -> None:
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["email"])
    sequence(db)  # the worker integrates the pending event
    receipt = tmp_path / "receipt.jws"
    receipt.write_text(client.get(f"/connections/{grant.id}/receipt").text)
    key = tmp_path / "ledger.pub"
    key.write_text(public_key_text(rt) + "\n")
    runner = CliRunner()

    good = runner.invoke(
        cli_app, ["ledger", "verify-receipt", str(receipt), "--public-key", str(key)]
    )
    assert good.exit_code == 0, good.output
    assert "OK: receipt" in good.output

    header, body, signature = receipt.read_text().strip().split(".")
    receipt.write_text(".".join([header, body[:-4] + "AAAA", signature]))
    bad = runner.invoke(
        cli_app, ["ledger", "verify-receipt", str(receipt), "--public-key", str(key)]
    )
    assert bad.exit_code == 1


def test_a_server_whose_base_url_names_another_log_refuses_to_sign_a_receipt(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    """The key belongs to the log its maker's settings named; a server started with another
    VRM_BASE_URL signs nothing (no receipt, no checkpoint) and says why."""
    person = individual(client, db, rt)
    shop = make_app(db, name="Shop")
    grant = connect(db, rt, person, shop, ["email"])
    sequence(db)  # the worker integrates the pending event
    headers = bearer(db, rt, shop, grant)
    moved = dataclasses.replace(
        rt, settings=rt.settings.model_copy(update={"base_url": "https://elsewhere.example"})
    )
    before = db.scalar(select(func.count()).select_from(LedgerCheckpoint))

    with TestClient(create_app(runtime=moved), base_url="http://testserver") as vendor:
        response = vendor.get(f"/vendor/v1/receipts/{grant.id}", headers=headers)

    assert response.status_code == 500
    detail = response.json()["detail"]
    assert "refusing to sign for the consent ledger" in detail
    assert f"belongs to the log '{origin(rt)}'" in detail
    assert "names the log 'elsewhere.example/consent-ledger'" in detail
    assert db.scalar(select(func.count()).select_from(LedgerCheckpoint)) == before


def test_receipt_is_pending_until_the_sequencer_integrates_the_event(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt)
    shop = make_app(db, name="Shop")
    grant = connect(db, rt, person, shop, ["email", "phone"])
    headers = bearer(db, rt, shop, grant)
    db.commit()

    pending = client.get(f"/vendor/v1/receipts/{grant.id}", headers=headers)
    assert pending.status_code == 409, pending.text
    assert pending.json()["error"] == "receipt_pending"
    assert pending.headers["retry-after"] == "1"
    page = client.get(f"/connections/{grant.id}/receipt", follow_redirects=True)
    assert page.status_code == 200
    assert "being added to the consent ledger" in page.text

    sequence(db)
    db.commit()
    given = client.get(f"/vendor/v1/receipts/{grant.id}", headers=headers)
    assert given.status_code == 200, given.text
    first = verify_receipt(given.json()["receipt"], public_key_text(rt))
    assert first["event"]["type"] == "grant.given"

    # A later change is pending again: no receipt for the older event meanwhile.
    GrantService(db, rt).narrow(person.id, grant.id, ["phone"])
    db.commit()
    assert client.get(f"/vendor/v1/receipts/{grant.id}", headers=headers).status_code == 409
    sequence(db)
    db.commit()
    narrowed = client.get(f"/vendor/v1/receipts/{grant.id}", headers=headers)
    payload = verify_receipt(narrowed.json()["receipt"], public_key_text(rt))
    assert payload["event"]["type"] == "grant.narrowed"
    assert payload["ledger"]["index"] == first["ledger"]["index"] + 1
