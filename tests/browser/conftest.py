"""Browser tests: Debian's Chromium, driven by Playwright, against a real uvicorn server.

The server runs once per session (per xdist worker) in a background thread, on a fresh SQLite
file and a fresh key directory, upgraded to the Alembic head. Browser tests run once, on
SQLite: they test what a person sees, not the database backend.

Every page a test visits is watched for console errors and failed requests, so a page that
breaks under the strict Content-Security-Policy (an inline script or style, a blocked
resource) fails the test that visited it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Response,
    expect,
    sync_playwright,
)

from tests.conftest import test_settings
from vault.migrate import upgrade
from vault.runtime import Runtime
from vrm.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000  # generous: the suite may share a busy machine
CALL_FAILED = pytest.StashKey[bool]()


SERVERS: dict[str, Runtime] = {}
"""Each running test server's base URL and a runtime on its database: how a journey reads the
mail the server queued (as its worker would send it)."""


class LiveServer:
    """uvicorn serving the app on 127.0.0.1 in a background thread."""

    def __init__(self, tmp: Path, **overrides: object) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        database_url = f"sqlite:///{tmp / 'vault.db'}"
        upgrade(database_url)
        settings = test_settings(tmp / "keys", database_url, base_url=self.url, **overrides)
        self.rt = Runtime.from_settings(settings)
        SERVERS[self.url] = self.rt
        config = uvicorn.Config(
            create_app(runtime=self.rt), log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the uvicorn test server did not start; see the log above")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        SERVERS.pop(self.url, None)
        self.rt.engine.dispose()


@contextmanager
def own_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, **overrides: object
) -> Iterator[tuple[str, Runtime]]:
    """A server for one test module, and a runtime on its database (to set up vendors and
    grants as an operator would). A module's ``vault_server`` fixture wraps it."""
    tmp = tmp_path_factory.mktemp(name)
    server = LiveServer(tmp, **overrides)
    server.start()
    settings = test_settings(
        tmp / "keys", f"sqlite:///{tmp / 'vault.db'}", base_url=server.url, **overrides
    )
    rt = Runtime.from_settings(settings)
    try:
        yield server.url, rt
    finally:
        server.stop()
        rt.engine.dispose()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a running server with an empty database."""
    server = LiveServer(tmp_path_factory.mktemp("browser-server"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Browser tests need Debian's Chromium at {CHROMIUM}, and it is missing. "
            "Install it with `make test` (which runs `apt-get install chromium`) or "
            "`sudo apt-get install chromium`.",
            pytrace=False,
        )
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


class PageProblems:
    """Console errors and failed requests seen while a test used the page."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        # A page answered with 4xx (a form shown again with its errors) logs "Failed to load
        # resource"; that is expected. Failed subresources are caught by ``response`` below.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.found.append(f"console error: {message.text}")

    def page_error(self, error: Exception) -> None:
        self.found.append(f"uncaught page error: {error}")

    def response(self, response: Response) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.found.append(
                f"{response.status} for {response.request.resource_type} {response.url}"
            )

    def request_failed(self, request: Request) -> None:
        # ERR_ABORTED: the person moved on (clicked, submitted) before, say, the icon arrived.
        if request.failure != "net::ERR_ABORTED":
            self.found.append(f"request failed: {request.method} {request.url} ({request.failure})")


@pytest.fixture
def context(browser: Browser, live_server: str) -> Iterator[BrowserContext]:
    """A fresh browser profile: no cookies, nobody signed in."""
    ctx = browser.new_context(base_url=live_server, locale="en-GB")
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember whether the test body failed, for the ``page`` fixture's screenshot."""
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    """A tab that fails the test on console errors, CSP violations or failed subresources.

    When the test fails, a screenshot of the page is saved and its path printed.
    """
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    problems = PageProblems()
    page.on("console", problems.console)
    page.on("pageerror", problems.page_error)
    page.on("response", problems.response)
    page.on("requestfailed", problems.request_failed)
    yield page
    if request.node.stash.get(CALL_FAILED, False):
        shot = tmp_path / "failure.png"
        page.screenshot(path=shot, full_page=True)
        print(f"screenshot of the page at {page.url}: {shot}")
    assert not problems.found, "the page reported problems:\n" + "\n".join(problems.found)
