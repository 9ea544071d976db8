"""The OpenID Connect signing key (RS256) and its JWKS.

Kept in the key directory as ``oidc-signing.json`` (mode 0600) like the other keys, with the
same ``origin`` marker: created on first use in development, only by `vrm keys init` for
production, where a development key is refused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from joserfc.jwk import RSAKey

from vault.keys import SigningKeyFile
from vault.runtime import Runtime

KEY = SigningKeyFile(
    "oidc-signing.json", "RS256", lambda: RSAKey.generate_key(2048).as_pem(private=True).decode()
)
KEY_FILE = KEY.filename


@lru_cache(maxsize=8)
def _import(pem: str) -> RSAKey:
    return RSAKey.import_key(pem)


def signing_key(rt: Runtime) -> RSAKey:
    return _import(KEY.load(rt.settings.key_dir, production=rt.settings.is_production))


def key_id(rt: Runtime) -> str:
    return str(signing_key(rt).thumbprint())


def jwks(rt: Runtime) -> dict[str, Any]:
    key = signing_key(rt)
    public = dict(key.as_dict(private=False))
    public.update({"kid": key.thumbprint(), "use": "sig", "alg": "RS256"})
    return {"keys": [public]}
