"""The vault as it runs in production: ``vrm serve`` in processes of its own, on a database and
a key directory the test shares with them.

For what only separate processes show: what one process does is seen at once by another
(revocations, sessions, rate limits, single-use codes), and what a process does when it is
told to stop (SIGTERM). Setting up vendors and grants goes through a :class:`Runtime` on the
same database, as an operator's tools would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import test_settings
from vault.migrate import upgrade
from vault.runtime import Runtime

START_TIMEOUT = 30.0  # seconds; generous, the suite may share a busy machine


@dataclass
class Served:
    """One ``vrm serve`` process."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 20.0) -> str:
        """SIGTERM, as a process manager sends it; waits for the exit and returns the output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
            raise AssertionError(f"vrm serve did not stop on SIGTERM:\n{out.decode()}") from None
        return out.decode(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(database_url: str, key_dir: Path, **settings: object) -> dict[str, str]:
    """The environment of a served process: the test settings, as ``VRM_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VRM_")}
    values = test_settings(key_dir, database_url, **settings).model_dump(exclude_unset=True)
    for name, value in values.items():
        env["VRM_" + name.upper()] = str(value)
    return env


@contextmanager
def vault(database_url: str, key_dir: Path) -> Iterator[Runtime]:
    """The database migrated to the head, and a runtime on it (it makes the keys, if new)."""
    upgrade(database_url)
    rt = Runtime.from_settings(test_settings(key_dir, database_url))
    try:
        yield rt
    finally:
        rt.engine.dispose()


@contextmanager
def served(database_url: str, key_dir: Path, **settings: object) -> Iterator[Served]:
    """``vrm serve`` on a free port of 127.0.0.1 until the block ends, then stopped."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = environment(database_url, key_dir, base_url=url, **settings)
    process = subprocess.Popen(
        [sys.executable, "-m", "vrm.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = Served(url, process)
    try:
        _wait_until_up(server)
        yield server
    finally:
        server.stop()


def _wait_until_up(server: Served) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"vrm serve exited at start:\n{server.stop()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"vrm serve did not answer within {START_TIMEOUT} s:\n{server.stop()}")
