"""TOTP against RFC 6238's test vectors (SHA-1), its window, and the provisioning URI."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from vault.factors import totp
from vault.factors.service import normalise_recovery

RFC_SECRET = b"12345678901234567890"


@pytest.mark.parametrize(
    ("unix_time", "expected"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_rfc_6238_vectors(unix_time: int, expected: str) -> None:
    assert totp.code_at(RFC_SECRET, unix_time, digits=8) == expected


def test_six_digit_codes_are_the_last_six_of_the_rfc_values() -> None:
    assert totp.code_at(RFC_SECRET, 59) == "287082"


def test_the_window_is_one_step_either_side() -> None:
    now = totp.step_at(1111111109)
    for offset in (-1, 0, 1):
        code = totp.hotp(RFC_SECRET, now + offset)
        assert totp.matching_step(RFC_SECRET, code, now) == now + offset
    for offset in (-2, 2):
        assert totp.matching_step(RFC_SECRET, totp.hotp(RFC_SECRET, now + offset), now) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("123456", "123456"),
        (" 123 456 ", "123456"),
        ("12345", None),
        ("1234567", None),
        ("12345a", None),
        ("١٢٣٤٥٦", None),
    ],
)
def test_codes_are_six_ascii_digits(raw: str, expected: str | None) -> None:
    assert totp.normalise_code(raw) == expected


def test_recovery_codes_are_read_leniently_but_only_from_their_alphabet() -> None:
    assert normalise_recovery("ABCDE-FGHJK") == "abcdefghjk"
    assert normalise_recovery("abcde fghjk") == "abcdefghjk"
    assert normalise_recovery("abcde-fghj0") is None
    assert normalise_recovery("abcde") is None


def test_the_provisioning_uri_names_the_issuer_and_the_parameters() -> None:
    uri = totp.provisioning_uri(RFC_SECRET, "person@example.org", "VRM Vault")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parts.path == "/VRM%20Vault:person@example.org"
    query = parse_qs(parts.query)
    assert query["secret"] == [totp.base32(RFC_SECRET)]
    assert query["issuer"] == ["VRM Vault"]
    assert query["digits"] == ["6"] and query["period"] == ["30"]
    assert totp.qr_svg(uri).startswith("<svg")
