"""What a running service holds: settings, database, keys and the password hasher."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.low_level import Type
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vault.db import make_engine, make_sessionmaker
from vault.keys import KeyDirectory, KeyManagementError, LocalKeyProvider, ServiceSecrets
from vault.settings import Settings, SettingsError


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keys: LocalKeyProvider
    secrets: ServiceSecrets
    passwords: PasswordHasher

    @classmethod
    def from_settings(cls, settings: Settings, *, engine: Engine | None = None) -> Runtime:
        settings.check_production()
        try:
            secrets, provider = _open_keys(settings)
        except KeyManagementError as exc:
            raise SettingsError(str(exc)) from exc
        engine = engine or make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            keys=provider,
            secrets=secrets,
            passwords=make_password_hasher(settings),
        )


def _open_keys(settings: Settings) -> tuple[ServiceSecrets, LocalKeyProvider]:
    """Load the key directory; development creates missing keys, production never does."""
    key_dir = KeyDirectory(settings.key_dir)
    if settings.is_production:
        if not key_dir.exists():
            raise SettingsError(
                f"No keys in {settings.key_dir}. In production keys are never created on "
                "start; create them once with `vrm keys init`."
            )
        dev = key_dir.development_keys()
        if dev:
            raise SettingsError(
                "Refusing to start in production with development keys "
                f"({', '.join(sorted(dev))}). Create production keys with `vrm keys init` "
                "in an empty VRM_KEY_DIR."
            )
    else:
        key_dir.initialise(origin="development")
    provider = LocalKeyProvider(settings.key_dir)
    provider.current_version()
    return key_dir.load_secrets(), provider


def make_password_hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )
