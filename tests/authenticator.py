"""A software WebAuthn authenticator (ES256, attestation "none") for tests that drive
passkeys without a browser: it answers the options the vault sends as a platform
authenticator would, so the vault's verification (py_webauthn) runs on real signatures.
Browser tests use Chromium's own virtual authenticator instead."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    counter: int = 0


@dataclass
class SoftAuthenticator:
    origin: str
    credentials: list[Credential] = field(default_factory=list)
    verifies_user: bool = True

    def _flags(self) -> int:
        return UP | (UV if self.verifies_user else 0)

    def create(self, options: dict[str, Any]) -> str:
        """A registration answer (JSON) to ``navigator.credentials.create`` options."""
        rp_id = options["rp"]["id"]
        excluded = {unb64url(c["id"]) for c in options.get("excludeCredentials", [])}
        assert not excluded & {c.credential_id for c in self.credentials}, "already registered"
        cred = Credential(
            secrets.token_bytes(32),
            ec.generate_private_key(ec.SECP256R1()),
            rp_id,
            unb64url(options["user"]["id"]),
        )
        self.credentials.append(cred)
        numbers = cred.key.public_key().public_numbers()
        cose = cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags() | AT])
            + cred.counter.to_bytes(4, "big")
            + bytes(16)
            + len(cred.credential_id).to_bytes(2, "big")
            + cred.credential_id
            + cose
        )
        client_data = self._client_data("webauthn.create", options["challenge"])
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": b64url(cred.credential_id),
                "rawId": b64url(cred.credential_id),
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal"],
                },
            }
        )

    def get(self, options: dict[str, Any], credential: Credential | None = None) -> str:
        """An authentication answer (JSON) to ``navigator.credentials.get`` options: with the
        given credential, or the first one the options allow (any, when they list none)."""
        allowed = {unb64url(c["id"]) for c in options.get("allowCredentials", [])}
        if credential is None:
            usable = [c for c in self.credentials if not allowed or c.credential_id in allowed]
            assert usable, "no credential for these options"
            credential = usable[0]
        credential.counter += 1
        auth_data = (
            hashlib.sha256(options["rpId"].encode()).digest()
            + bytes([self._flags()])
            + credential.counter.to_bytes(4, "big")
        )
        client_data = self._client_data("webauthn.get", options["challenge"])
        signature = credential.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": b64url(credential.credential_id),
                "rawId": b64url(credential.credential_id),
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": b64url(credential.user_handle),
                },
            }
        )

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        ).encode()
