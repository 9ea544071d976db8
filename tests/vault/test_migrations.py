"""The Alembic revisions are the schema: they agree with the models and run both ways."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, LargeBinary, MetaData, String, inspect

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
