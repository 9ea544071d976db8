"""The OpenID Connect signing key (RS256) and its JWKS.

Kept in the key directory as ``oidc-signing.json`` (mode 0600) like the other keys, with the
same ``origin`` marker: created on first use in development, only by `vrm keys init` for
production, where a development key is refused.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from joserfc.jwk import RSAKey

from vault.runtime import Runtime
from vault.settings import SettingsError

KEY_FILE = "oidc-signing.json"


def ensure_signing_key(key_dir: Path, origin: Literal["development", "operator"]) -> bool:
    """Create the RSA signing key if missing (never overwrites). True when created."""
    path = key_dir / KEY_FILE
    if path.exists():
        return False
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    payload = {
        "key": RSAKey.generate_key(2048).as_pem(private=True).decode(),
        "alg": "RS256",
        "origin": origin,
        "created_at": datetime.now(UTC).isoformat(),
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False  # another process created it first
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh)
    return True


@lru_cache(maxsize=8)
def _load(path: Path, mtime: float) -> tuple[RSAKey, str]:
    if path.stat().st_mode & 0o077:
        raise SettingsError(f"{path} is readable by others; run `chmod 600 {path}`.")
    data = json.loads(path.read_text())
    return RSAKey.import_key(data["key"]), str(data.get("origin", "operator"))


def signing_key(rt: Runtime) -> RSAKey:
    path = rt.settings.key_dir / KEY_FILE
    if not path.exists():
        if rt.settings.is_production:
            raise SettingsError(f"Missing {path}; create it with `vrm keys init`.")
        ensure_signing_key(rt.settings.key_dir, "development")
    key, origin = _load(path, path.stat().st_mtime)
    if rt.settings.is_production and origin == "development":
        raise SettingsError(f"{path} was generated for development; refusing it in production.")
    return key


def key_id(rt: Runtime) -> str:
    return str(signing_key(rt).thumbprint())


def jwks(rt: Runtime) -> dict[str, Any]:
    key = signing_key(rt)
    public = dict(key.as_dict(private=False))
    public.update({"kid": key.thumbprint(), "use": "sig", "alg": "RS256"})
    return {"keys": [public]}
