"""The name a vendor knows an intent's owner by: stable for that vendor, different for each.

Derived, never stored: HMAC-SHA256 under the vault's blind-index key over the app id and the
owner's account id, domain-separated from the OIDC pairwise ``sub`` so that a vendor cannot
match an intent's owner with a person who connected to it. Once the account is erased nothing
links the pseudonym back to anyone.
"""

from __future__ import annotations

import uuid

from vault.crypto import blind_index
from vault.runtime import Runtime

PREFIX = "anon-"


def owner_pseudonym(rt: Runtime, app_id: uuid.UUID, owner_id: uuid.UUID) -> str:
    mac = blind_index(rt.secrets.blind_index_key, "intent-owner", f"{app_id}:{owner_id}")
    return PREFIX + mac.hex()[:32]
