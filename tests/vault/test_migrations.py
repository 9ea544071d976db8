"""The Alembic revisions are the schema: they agree with the models and run both ways."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, LargeBinary, MetaData, String, insert, inspect, text

from tests.vault.conftest import Deployment
from vault.migrate import MIGRATIONS_DIR, alembic_config, current, head, upgrade
from vrm.models import Base


def differences(engine: Engine, metadata: MetaData = Base.metadata) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_models_and_migrations_agree(engine: Engine) -> None:
    """The session database was built by ``vault.migrate.upgrade``; autogenerate sees nothing."""
    assert current(engine) == head()
    assert differences(engine) == []


def test_the_comparison_would_catch_a_model_change(engine: Engine) -> None:
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["profile_fields"].append_column(Column("nickname_ct", LargeBinary))
    changed.tables["accounts"].c.role.type = String(32)
    found = differences(engine, changed)
    kinds = sorted(str(diff[0][0] if isinstance(diff, list) else diff[0]) for diff in found)
    assert kinds == ["add_column", "modify_type"]


def test_every_model_table_is_created_by_the_migrations(engine: Engine) -> None:
    assert tables(engine) == set(Base.metadata.tables)


def test_the_migrations_have_one_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    assert len(script.get_heads()) == 1
    assert script.get_current_head() == head()


def test_upgrade_downgrade_to_base_and_upgrade_again(deployment: Deployment) -> None:
    engine = deployment.engine()
    assert current(engine) is None

    upgrade(engine)
    assert current(engine) == head()
    assert tables(engine) == set(Base.metadata.tables)

    command.downgrade(alembic_config(engine), "base")
    assert current(engine) is None
    assert tables(engine) == set()

    upgrade(engine)
    assert current(engine) == head()
    assert differences(engine) == []


def test_upgrade_at_head_is_a_no_op(deployment: Deployment) -> None:
    engine = deployment.engine()
    upgrade(engine)
    upgrade(engine)
    assert current(engine) == head()
    assert differences(engine) == []


def test_access_log_rows_get_their_apps_name_and_outlive_the_app(deployment: Deployment) -> None:
    """0012 names each existing read after its app; deleting the app then keeps the read."""
    engine = deployment.engine()
    command.upgrade(alembic_config(engine), "0011")
    schema = MetaData()
    schema.reflect(engine)
    now = datetime.now(UTC)
    person, app, read = (uuid.uuid4().hex for _ in range(3))
    with engine.begin() as conn:
        conn.execute(
            insert(schema.tables["accounts"]),
            {
                "id": person,
                "role": "individual",
                "status": "active",
                "email_index": b"\0" * 32,
                "password_hash": "x",
                "password_changed_at": now,
                "created_at": now,
                "updated_at": now,
            },
        )
        conn.execute(
            insert(schema.tables["vendor_apps"]),
            {
                "id": app,
                "client_id": "app-backfill",
                "name": "Acme Shoes",
                "homepage_url": "https://shop.example",
                "privacy_policy_url": "https://shop.example/privacy",
                "redirect_uris": [],
                "purpose": "Shoes.",
                "webhook_secret_version": 1,
                "accepted_agreements": [],
                "vendor_scopes": [],
                "token_endpoint_auth_method": "client_secret_basic",
                "registered_via": "console",
                "created_at": now,
                "updated_at": now,
            },
        )
        conn.execute(
            insert(schema.tables["access_log"]),
            {
                "id": read,
                "individual_id": person,
                "app_id": app,
                "fields": ["email"],
                "accessed_at": now,
            },
        )

    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM vendor_apps"))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT app_id, app_name FROM access_log")).all()

    assert [tuple(row) for row in rows] == [(None, "Acme Shoes")]
