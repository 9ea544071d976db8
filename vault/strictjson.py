"""JSON text that must be Unicode: :func:`loads` is ``json.loads`` refusing strings that are not.

Python's ``json`` turns an escaped lone UTF-16 surrogate (``"Al\\ud800ice"``), or the same
code point sent as UTF-8-like bytes, into a ``str`` that is not text: it cannot be encoded, so
it fails far from the input (encrypting a profile field, binding a database parameter,
rendering an answer). :func:`loads` refuses such a document where it is decoded, wherever the
string is (a value, an object key, under ``Any``), naming where. Every route's JSON body
(``vault.routing``), the dynamic client registration document and an imported archive are
decoded with it.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_WHERE = 100


class NotText(json.JSONDecodeError):
    """A JSON document holding a string that is not Unicode text (a lone UTF-16 surrogate)."""


def _where(path: tuple[str, ...]) -> str:
    where = ".".join(path) or "the document"
    return where if len(where) <= _MAX_WHERE else where[: _MAX_WHERE - 3] + "..."


def _lone_surrogate(document: Any) -> str | None:
    """Where the first string or object key holding a lone surrogate is, or None.

    Surrogate pairs were joined into one character by the decoder: any surrogate left is lone.
    """
    todo: list[tuple[tuple[str, ...], Any]] = [((), document)]
    while todo:  # not recursive: the nesting is as deep as the decoder allowed
        path, value = todo.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return _where(path)
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    return f"a key of {_where(path)}"
                todo.append(((*path, key), item))
        elif isinstance(value, list):
            todo.extend(((*path, str(i)), item) for i, item in enumerate(value))
    return None


def loads(body: bytes | str) -> Any:
    """``json.loads``, refusing text that is not Unicode with :class:`NotText`."""
    try:
        document = json.loads(body)
    except UnicodeDecodeError as exc:  # bytes that are not UTF-8 (nor UTF-16 or -32)
        raise NotText("not valid UTF-8 text", exc.object.decode("latin-1"), exc.start) from None
    # Only an escape (\u) or a non-ASCII byte can make a surrogate.
    if isinstance(body, bytes):
        plain = body.isascii() and b"\\u" not in body
    else:
        plain = body.isascii() and "\\u" not in body
    where = None if plain else _lone_surrogate(document)
    if where is not None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        raise NotText(
            f"{where} holds a lone UTF-16 surrogate (\\ud800 to \\udfff), which is not a "
            "character; send text as valid Unicode",
            text,
            0,
        )
    return document
