"""A server process settles its heap once it has started (``vrm.app.settle_heap``): what it
allocated to start is out of the garbage collector's sight, and what it makes afterwards is
still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from vault.runtime import Runtime
from vrm.app import YOUNG_OBJECTS, create_app


class _Node:
    other: object


def _seen(obj: object) -> bool:
    """Whether the collector walks ``obj`` (frozen objects are in none of its generations)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """The test process's collector as it was: this test must not freeze the objects of the
    tests that follow."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_started_server_app_freezes_what_it_allocated_and_still_collects_new_cycles(
    rt: Runtime, restored_collector: None
) -> None:
    app = create_app(runtime=rt, settle=True)
    assert _seen(app)
    with TestClient(app) as client:
        assert not _seen(app)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_OBJECTS
        assert client.get("/healthz").status_code == 200

        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle: reference counting alone never frees it
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None


def test_an_app_made_for_tests_leaves_the_collector_alone(rt: Runtime) -> None:
    threshold = gc.get_threshold()
    app = create_app(runtime=rt)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert _seen(app)
        assert gc.get_threshold() == threshold
