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
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from pydantic import SecretStr

from tests.conftest import test_settings
from vault.migrate import upgrade
from vault.runtime import Runtime

START_TIMEOUT = (
    90.0  # seconds; generous, the suite may share a busy machine (workers import for seconds)
)


@dataclass
class Served:
    """One ``vrm serve`` process; its output goes to a file (a pipe nobody reads would fill up
    and stall a server that answers many requests)."""

    url: str
    process: subprocess.Popen[bytes]
    output: IO[bytes]

    def stop(self, timeout: float = 20.0) -> str:
        """SIGTERM, as a process manager sends it; waits for the exit and returns the output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"vrm serve did not stop on SIGTERM:\n{self.log()}") from None
        return self.log()

    def log(self) -> str:
        """What the process printed so far."""
        self.output.seek(0)
        return self.output.read().decode(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(database_url: str, key_dir: Path, **settings: object) -> dict[str, str]:
    """The environment of a served process: the test settings, as ``VRM_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VRM_")}
    values = test_settings(key_dir, database_url, **settings).model_dump(exclude_unset=True)
    for name, value in values.items():
        secret = value.get_secret_value() if isinstance(value, SecretStr) else value
        env["VRM_" + name.upper()] = str(secret)
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
def served(
    database_url: str, key_dir: Path, *, workers: int = 1, **settings: object
) -> Iterator[Served]:
    """``vrm serve`` on a free port of 127.0.0.1 until the block ends, then stopped.

    ``workers``: ``vrm serve --workers N``, N worker processes behind the one socket."""
    with served_together(1, database_url, key_dir, workers=workers, **settings) as (server,):
        yield server


@contextmanager
def served_together(
    count: int, database_url: str, key_dir: Path, *, workers: int = 1, **settings: object
) -> Iterator[tuple[Served, ...]]:
    """``count`` separate ``vrm serve`` commands on the same database and keys, as a proxy
    would spread requests over: all are started before any is waited for (start-up is
    mostly imports, so they overlap), and all are stopped when the block ends.

    They serve one vault, so they share its public URL (``VRM_BASE_URL``, which also names the
    consent ledger): the first one's address unless ``base_url`` is given."""
    with ExitStack() as stack:
        servers = []
        ports = [_free_port() for _ in range(count)]
        public = settings.pop("base_url", None) or f"http://127.0.0.1:{ports[0]}"
        for port in ports:
            output = stack.enter_context(tempfile.TemporaryFile())
            server = _start(
                database_url, key_dir, workers, port, {**settings, "base_url": public}, output
            )
            stack.callback(server.stop)
            servers.append(server)
        for server in servers:
            _wait_until_up(server)
        yield tuple(servers)


def _start(
    database_url: str,
    key_dir: Path,
    workers: int,
    port: int,
    settings: dict[str, object],
    output: IO[bytes],
) -> Served:
    url = f"http://127.0.0.1:{port}"
    env = environment(database_url, key_dir, **settings)
    command = [sys.executable, "-m", "vrm.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)], env=env, stdout=output, stderr=subprocess.STDOUT
    )
    return Served(url, process, output)


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
