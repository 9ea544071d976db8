"""The strict JSON decoder: text that is not Unicode (a lone UTF-16 surrogate) is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vault.strictjson import NotText, loads


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'"Al\\ud800ice"', "the document"),
        (b'{"value": "Al\\udfffice"}', "value"),
        (b'{"value": {"street": "x", "city": "\\ud83d"}}', "value.city"),
        (b'{"value": ["a", "\\ude00b"]}', "value.1"),
        (b'{"value": {"\\ud800": "x"}}', "a key of value"),
        ('{"value": "Al\\ud800ice"}', "value"),  # a str, as well as bytes
        (b'{"value": "Al\xed\xa0\x80ice"}', "value"),  # "\ud800" as UTF-8-like bytes
        (b'{"value": "\\ud83d\\ud83d"}', "value"),  # two high halves are no pair
    ],
)
def test_a_lone_surrogate_anywhere_is_refused_naming_where(body: bytes | str, where: str) -> None:
    with pytest.raises(NotText) as refused:
        loads(body)
    assert refused.value.msg.startswith(f"{where} holds a lone UTF-16 surrogate")


def test_bytes_that_are_not_utf8_are_refused_as_json() -> None:
    with pytest.raises(NotText) as refused:
        loads(b'{"value": "\xff"}')
    assert refused.value.msg == "not valid UTF-8 text"
    assert refused.value.pos == 11


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"value": "Ada \\ud83d\\ude00"}', {"value": "Ada \U0001f600"}),
        ('{"value": "Ada \U0001f600"}'.encode(), {"value": "Ada \U0001f600"}),
        (b'{"value": "a \\\\ud800 b"}', {"value": "a \\ud800 b"}),  # an escaped backslash
        (b'{"value": "\\u00e9t\\u00e9", "n": [1, 2.5, null, true]}', None),
    ],
)
def test_unicode_text_passes_as_json_loads_would_decode_it(body: bytes, value: Any) -> None:
    assert loads(body) == (value if value is not None else json.loads(body))
