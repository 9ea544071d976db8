"""The name a vendor knows an intent's owner by: stable for that vendor, different for each.

Derived, never stored: HMAC-SHA256 under the vault's blind-index key over the app id and the
owner's account id, domain-separated from the OIDC pairwise ``sub`` so that a vendor cannot
match an intent's owner with a person who connected to it. Once the account is erased nothing
links the pseudonym back to anyone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from vault.crypto import blind_index
from vault.runtime import Runtime

PREFIX = "anon-"


def owner_pseudonym(rt: Runtime, app_id: uuid.UUID, owner_id: uuid.UUID) -> str:
    return pseudonyms_for(rt, app_id)(owner_id)


def pseudonyms_for(rt: Runtime, app_id: uuid.UUID) -> Callable[[uuid.UUID], str]:
    """:func:`owner_pseudonym` for one app, each owner's made once (a page of intents often
    shows one owner's several)."""
    known: dict[uuid.UUID, str] = {}
    app = f"{app_id}:"

    def of(owner_id: uuid.UUID) -> str:
        name = known.get(owner_id)
        if name is None:
            mac = blind_index(rt.secrets.blind_index_key, "intent-owner", app + str(owner_id))
            name = known[owner_id] = PREFIX + mac.hex()[:32]
        return name

    return of
