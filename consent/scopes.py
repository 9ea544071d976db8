"""Scopes: profile fields (``profile:<key>``), vendor capabilities, and ``openid``."""

from __future__ import annotations

import functools

from vault.errors import InvalidInput
from vault.profile.catalogue import FIELDS

PROFILE_PREFIX = "profile:"
OPENID = "openid"
VENDOR_SCOPES = {
    "intents:read": "List open purchase intents",
    "offers:write": "Answer intents with offers",
}


def profile_scopes() -> list[str]:
    return [PROFILE_PREFIX + key for key in FIELDS]


def all_scopes() -> list[str]:
    return [OPENID, *profile_scopes(), *VENDOR_SCOPES]


def split(scope: str | None) -> list[str]:
    return [s for s in (scope or "").split() if s]


def fields_in(scope: str | None) -> list[str]:
    """The profile field keys a scope string names, in catalogue order."""
    wanted = {s.removeprefix(PROFILE_PREFIX) for s in split(scope) if s.startswith(PROFILE_PREFIX)}
    return [key for key in FIELDS if key in wanted]


@functools.lru_cache(maxsize=1024)
def field_set(scope: str | None) -> frozenset[str]:
    """:func:`fields_in` as a set, kept per process for the scope strings in use (a token's
    scope is read on every profile read; an app asks for few)."""
    return frozenset(fields_in(scope))


def scope_for(fields: list[str], *, openid: bool) -> str:
    parts = [OPENID] if openid else []
    parts += [PROFILE_PREFIX + key for key in FIELDS if key in set(fields)]
    return " ".join(parts)


def check_fields(fields: list[str]) -> list[str]:
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise InvalidInput(
            f"Unknown profile fields: {', '.join(sorted(unknown))[:200]}.", field="fields"
        )
    return [key for key in FIELDS if key in set(fields)]
