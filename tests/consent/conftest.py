"""Consent tests borrow the portal's second browser (for a second person); ``committed_runtime``
is a fresh database whose sessions commit for real (several workers, threads)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.vault.conftest import make_settings
from tests.web.conftest import browsers, second_client
from vault.db import make_engine
from vault.migrate import upgrade
from vault.runtime import Runtime

__all__ = ["browsers", "committed_runtime", "second_client"]


@pytest.fixture
def committed_runtime(backend: str, new_database: Any, tmp_path: Path) -> Iterator[Runtime]:
    url = new_database(backend)
    engine = make_engine(url)
    upgrade(engine)
    rt = Runtime.from_settings(make_settings(tmp_path / "keys", url), engine=engine)
    yield rt
    engine.dispose()
