"""The name a vendor knows an intent's owner by: stable for that vendor, different for each.

Derived, never stored: HMAC-SHA256 under the vault's blind-index key over the app id and the
owner's account id, domain-separated from the OIDC pairwise ``sub`` so that a vendor cannot
match an intent's owner with a person who connected to it. Once the account is erased nothing
links the pseudonym back to anyone. A process keeps the pseudonyms it made last in memory
(bounded), never in the database.
"""

from __future__ import annotations

import functools
import uuid

from vault.crypto import blind_index
from vault.runtime import Runtime

PREFIX = "anon-"


def owner_pseudonym(rt: Runtime, app_id: uuid.UUID, owner_id: uuid.UUID) -> str:
    return _pseudonym(rt.secrets.blind_index_key, app_id, owner_id)


@functools.lru_cache(maxsize=20_000)
def _pseudonym(key: bytes, app_id: uuid.UUID, owner_id: uuid.UUID) -> str:
    """Kept for the pairs asked for most (a listing shows twenty owners to the same app, page
    after page): a function of its arguments alone, so nothing can make a kept one wrong, and
    it tells nothing the vendor is not shown (a keyed hash of two ids, no personal data)."""
    mac = blind_index(key, "intent-owner", f"{app_id}:{owner_id}")
    return PREFIX + mac.hex()[:32]
