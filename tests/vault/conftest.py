"""A real deployment for tests that must commit: a fresh database, a key dir, the ``vrm`` CLI.

The ``deployment`` fixture points ``VRM_DATABASE_URL`` and ``VRM_KEY_DIR`` at a fresh, empty
(or, for tests marked ``migrated``, already migrated) database (SQLite file or PostgreSQL,
following the ``backend`` parameter) and a fresh key directory, with fast Argon2, exactly as an
operator's shell would; nothing it writes is rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine
from typer.testing import CliRunner

from tests.helpers import PASSWORD
from tests.web.conftest import browsers, client_with
from vault.db import make_engine
from vault.migrate import upgrade
from vault.profile.service import Profile, ProfileService
from vault.runtime import Runtime
from vault.settings import Settings, get_settings
from vault.signup import sign_up
from vrm.cli import app as cli_app

FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}

# Distinctive values for every standard field and a custom field. Non-ASCII on purpose, so the
# JSON-escaped form differs from the UTF-8 form.
PROFILE_VALUES: dict[str, Any] = {
    "given_name": "Zephyrine-Ødegård",
    "family_name": "Quixotebottom-Ñandú",
    "phone": "+31 20 794 6138",
    "address": {
        "street": "Xylophonestraat 4471",
        "extra": "Achterhuis Wolkenkrabber",
        "postal_code": "9471 QZ",
        "locality": "Grootvliedorp-Ürk",
        "region": "Zuidoosterland",
        "country": "NL",
    },
    "birthdate": "1947-03-29",
    "language": "fr",
    "clothing_size": "XXL",
    "shoe_size": {"system": "EU", "size": "47.5"},
    "dietary": ["kosher", "shellfish-allergy"],
}
CUSTOM_LABEL = "Lieblingsfarbe Ünterseeboot"
CUSTOM_VALUE = "Smaragdgroen met paarse stippen, 83 stuks"


def make_settings(key_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "development",
        "database_url": database_url,
        "key_dir": key_dir,
        **FAST_ARGON2,
        **overrides,
    }
    return Settings(**values)


class Deployment:
    """One database and one key directory, committed for real, driven as an operator would."""

    def __init__(self, url: str, key_dir: Path) -> None:
        self.url = url
        self.key_dir = key_dir
        self._engines: list[Engine] = []
        self.runner = CliRunner()

    def cli(self, *args: str, input: str | None = None) -> Result:
        get_settings.cache_clear()
        return self.runner.invoke(cli_app, list(args), input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self.cli(*args, input=input)
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    def engine(self) -> Engine:
        engine = make_engine(self.url)
        self._engines.append(engine)
        return engine

    def upgrade(self) -> None:
        upgrade(self.engine())

    def runtime(self, **overrides: Any) -> Runtime:
        """A new runtime, as a new service process would build it (nothing cached)."""
        settings = make_settings(self.key_dir, self.url, **overrides)
        return Runtime.from_settings(settings, engine=self.engine())

    def add_individual(self, rt: Runtime, email: str, *, full: bool = True) -> uuid.UUID:
        with rt.sessions() as session, session.begin():
            account = sign_up(session, rt, email, PASSWORD)
            profile = ProfileService(session, rt)
            if full:
                for key, value in PROFILE_VALUES.items():
                    profile.set_field(account, key, value)
                profile.add_custom(account, CUSTOM_LABEL, CUSTOM_VALUE)
            return account.id

    @staticmethod
    def profile(rt: Runtime, owner_id: uuid.UUID) -> Profile:
        with rt.sessions() as session:
            return ProfileService(session, rt).get(owner_id)

    def close(self) -> None:
        for engine in self._engines:
            engine.dispose()


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest,
    backend: str,
    new_database: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    """Empty, as an operator finds a new database; already at the head for tests marked
    ``migrated`` (whose subject is not the migration)."""
    url = new_database(backend, migrated=request.node.get_closest_marker("migrated") is not None)
    key_dir = tmp_path / "keys"
    for name in ("VRM_ENVIRONMENT", "VRM_BASE_URL", "VRM_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VRM_DATABASE_URL", url)
    monkeypatch.setenv("VRM_KEY_DIR", str(key_dir))
    for name, value in FAST_ARGON2.items():
        monkeypatch.setenv(f"VRM_{name.upper()}", str(value))
    get_settings.cache_clear()
    deployed = Deployment(url, key_dir)
    yield deployed
    deployed.close()
    get_settings.cache_clear()


__all__ = ["Deployment", "browsers", "client_with", "deployment"]
