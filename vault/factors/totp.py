"""TOTP (RFC 6238 on RFC 4226's HOTP): HMAC-SHA-1, 30-second steps, 6 digits, and the QR
code of its provisioning URI, drawn by the service itself as SVG."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

import segno

STEP_SECONDS = 30
DIGITS = 6
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation for HMAC-SHA-1


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def base32(secret: bytes) -> str:
    """The secret as authenticator apps take it typed in: base32, no padding."""
    return base64.b32encode(secret).decode().rstrip("=")


def hotp(secret: bytes, counter: int, digits: int = DIGITS) -> str:
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def step_at(unix_time: float) -> int:
    return int(unix_time // STEP_SECONDS)


def current_step() -> int:
    return step_at(time.time())


def code_at(secret: bytes, unix_time: float, digits: int = DIGITS) -> str:
    return hotp(secret, step_at(unix_time), digits)


def matching_step(secret: bytes, code: str, now_step: int, window: int = 1) -> int | None:
    """The step within ``window`` steps of ``now_step`` whose code is ``code``, or None."""
    found = None
    for step in range(now_step - window, now_step + window + 1):
        # Every candidate is compared (no early exit), in constant time.
        if hmac.compare_digest(hotp(secret, step), code):
            found = step
    return found


def normalise_code(raw: str) -> str | None:
    """Six digits (spaces allowed between them), or None."""
    code = "".join(raw.split())[:16]
    return code if len(code) == DIGITS and code.isascii() and code.isdigit() else None


def provisioning_uri(secret: bytes, account_label: str, issuer: str) -> str:
    label = quote(f"{issuer}:{account_label}", safe="@:")
    query = urlencode(
        {
            "secret": base32(secret),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_SECONDS,
        }
    )
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no script, no external service)."""
    qr = segno.make(uri, error="m", micro=False)
    svg: str = qr.svg_inline(scale=4, border=2, dark="#111", light="#fff", title="QR code")
    return svg
