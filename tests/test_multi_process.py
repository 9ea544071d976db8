"""Several ``vrm serve`` processes on one database: what one of them does is in force at once
in every other (issue 11, scale-out).

Two separate processes, A and B, serve one database and one key directory, as two app
servers behind a proxy would; a third command runs two workers behind one socket. Every
check goes through HTTP only, as a browser or a vendor's back end would: a person's browser
keeps one cookie jar whichever process answers (cookies are not port-scoped), a vendor calls
whichever process it likes. Setup that an operator's tools would do (vendor apps, grants,
tokens) goes through a runtime on the same database.

A and B are started once per backend for the whole module (each test makes an individual
and an app of its own, so the tests cannot see each other's state), with a read limit small
enough for the rate-limit test to reach; every other test reads far fewer times per app.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from consent.grants.models import Grant
from tests.consent.factories import bearer, connect, individual, make_app
from tests.consent.oauth_helpers import (
    REDIRECT_URI,
    Vendor,
    hidden_fields,
    make_vendor,
    new_verifier,
    query_of,
    ticked_fields,
)
from tests.helpers import PASSWORD, api_headers, page_csrf, post_form, sign_in, sign_up
from tests.served import Served, served, served_together, vault
from vault.runtime import Runtime

PROFILE = "/vendor/v1/profile"
READ_LIMIT = 10
TOKEN_LIMIT = 10
SCOPE = "openid profile:email profile:given_name"


@dataclass
class Deployment:
    """Two app servers on one database and key directory, and an operator's runtime on it."""

    rt: Runtime
    a: Served
    b: Served
    database_url: str
    key_dir: Path


@pytest.fixture(scope="module")
def deployment(
    backend: str,
    new_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    database_url = new_database(backend, migrated=True)
    key_dir = tmp_path_factory.mktemp("keys") / "keys"
    with (
        vault(database_url, key_dir) as rt,
        served_together(
            2,
            database_url,
            key_dir,
            vendor_reads_per_minute=READ_LIMIT,
            token_requests_per_minute=TOKEN_LIMIT,
        ) as (a, b),
    ):
        yield Deployment(rt, a, b, database_url, key_dir)


Browser = Callable[[Served], httpx.Client]


@contextmanager
def a_browser() -> Iterator[Browser]:
    """One person's browser: ``browser(server)`` is a client of that server, and the clients of
    one browser share its cookie jar, as one browser behind a proxy would."""
    jar = CookieJar()
    with ExitStack() as clients:

        def at(server: Served) -> httpx.Client:
            return clients.enter_context(httpx.Client(base_url=server.url, cookies=jar))

        yield at


@pytest.fixture
def browser() -> Iterator[Browser]:
    with a_browser() as at:
        yield at


@pytest.fixture
def another_browser() -> Iterator[Browser]:
    with a_browser() as at:
        yield at


def read(server: Served, headers: dict[str, str]) -> httpx.Response:
    """A vendor's profile read through ``server``, on a connection of its own."""
    return httpx.get(server.url + PROFILE, headers=headers)


def a_reader(rt: Runtime, at: httpx.Client, fields: list[str]) -> tuple[Grant, dict[str, str]]:
    """A person (signed up and so signed in in ``at``'s browser) who granted a new app
    ``fields``: the grant, and the app's authorization headers."""
    with rt.sessions() as db:
        person = individual(at, db, rt, given_name="Ada")
        app = make_app(db, name="Acme Shoes")
        grant = connect(db, rt, person, app, fields)
        return grant, bearer(db, rt, app, grant)


# -- revocation, narrowing and erasure are in force at once in every process --------------------


def test_a_grant_revoked_through_one_process_is_refused_by_the_other_at_once(
    deployment: Deployment, browser: Browser
) -> None:
    a, b = deployment.a, deployment.b
    grant, headers = a_reader(deployment.rt, browser(a), ["given_name"])
    first = read(a, headers)
    assert first.status_code == 200, first.text
    assert first.json()["fields"] == {"given_name": "Ada"}

    revoked = post_form(browser(b), f"/connections/{grant.id}/revoke", {}, "/connections")

    assert revoked.status_code == 303, revoked.text
    assert read(a, headers).status_code == 401
    assert [read(server, headers).status_code for server in (a, b) * 5] == [401] * 10
    page = browser(a).get("/connections").text
    assert "You revoked Acme Shoes&#39;s access." in page
    assert f"conn-{grant.id}" not in page


def test_a_field_removed_through_one_process_is_not_served_by_the_other(
    deployment: Deployment, browser: Browser
) -> None:
    a, b = deployment.a, deployment.b
    grant, headers = a_reader(deployment.rt, browser(a), ["given_name", "email"])
    assert read(a, headers).json()["fields"].keys() == {"given_name", "email"}

    narrowed = post_form(
        browser(b), f"/connections/{grant.id}/narrow", {"remove": ["email"]}, "/connections"
    )

    assert narrowed.status_code == 303, narrowed.text
    response = read(a, headers)
    assert response.status_code == 200
    assert response.json()["fields"] == {"given_name": "Ada"}


def test_a_vault_erased_through_one_process_is_unreadable_through_the_other(
    deployment: Deployment, browser: Browser
) -> None:
    """A has just opened the person's data key (it keeps opened keys for minutes): the read
    after the erasure must still find nothing."""
    a, b = deployment.a, deployment.b
    _, headers = a_reader(deployment.rt, browser(a), ["given_name", "email"])
    assert read(a, headers).status_code == 200
    assert httpx.get(a.url + "/oauth/userinfo", headers=headers).status_code == 200

    erase = browser(b)
    token = page_csrf(erase, "/account/erase")
    erased = erase.post(
        "/account/erase",
        data={"csrf_token": token, "password": PASSWORD, "confirmation": "erase my vault"},
    )

    assert erased.status_code == 200, erased.text
    assert "Your vault is erased" in erased.text
    assert read(a, headers).status_code == 401
    assert httpx.get(a.url + "/oauth/userinfo", headers=headers).status_code == 401
    assert [read(server, headers).status_code for server in (a, b) * 3] == [401] * 6
    assert browser(a).get("/profile").headers["location"] == "/signin?next=/profile"


# -- sessions and CSRF tokens are good in every process -----------------------------------------


def test_a_session_started_in_one_process_is_signed_in_in_the_other(
    deployment: Deployment,
    browser: Browser,
    another_browser: Browser,
) -> None:
    a, b = deployment.a, deployment.b
    email = sign_up(another_browser(b), rt=deployment.rt)

    signed_in = sign_in(browser(a), email)

    assert signed_in.status_code == 303, signed_in.text
    assert browser(b).get("/profile").status_code == 200
    mine = browser(b).get("/api/v1/profile")
    assert mine.status_code == 200
    assert mine.json()["fields"]["email"] == email


def test_signing_out_through_one_process_ends_the_session_in_the_other(
    deployment: Deployment, browser: Browser
) -> None:
    a, b = deployment.a, deployment.b
    sign_up(browser(a), rt=deployment.rt)
    assert browser(b).get("/profile").status_code == 200
    session = browser(a).cookies.get("vrm_session")
    assert session

    signed_out = post_form(browser(b), "/signout", {}, "/account")

    assert signed_out.status_code == 303, signed_out.text
    assert browser(a).get("/profile").headers["location"] == "/signin?next=/profile"
    # A browser that kept the cookie has no session either: it was ended, not just unset.
    kept = httpx.Client(base_url=a.url, cookies={"vrm_session": session})
    with kept:
        assert kept.get("/profile").headers["location"] == "/signin?next=/profile"


def test_a_csrf_token_from_a_page_of_one_process_is_accepted_by_the_other(
    deployment: Deployment, browser: Browser
) -> None:
    a, b = deployment.a, deployment.b
    sign_up(browser(a), rt=deployment.rt)
    token = page_csrf(browser(a), "/profile/fields/given_name")

    saved = browser(b).post(
        "/profile/fields/given_name", data={"value": "Grace", "csrf_token": token}
    )

    assert saved.status_code == 303, saved.text
    assert "Grace" in browser(a).get("/profile").text
    # The JSON API, with the header a page script reads from a page of A.
    changed = browser(b).put(
        "/api/v1/profile/fields/given_name",
        json={"value": "Hopper"},
        headers=api_headers(browser(a)),
    )
    assert changed.status_code == 200, changed.text
    assert browser(a).get("/api/v1/profile").json()["fields"]["given_name"] == "Hopper"


def test_a_csrf_token_of_another_session_is_refused_by_the_other_process(
    deployment: Deployment,
    browser: Browser,
    another_browser: Browser,
) -> None:
    a, b = deployment.a, deployment.b
    sign_up(browser(a), rt=deployment.rt)
    sign_up(another_browser(a), rt=deployment.rt)
    theirs = page_csrf(another_browser(a), "/profile/fields/given_name")

    forged = browser(b).post(
        "/profile/fields/given_name", data={"value": "Mallory", "csrf_token": theirs}
    )
    forged_api = browser(b).put(
        "/api/v1/profile/fields/given_name",
        json={"value": "Mallory"},
        headers={"X-CSRF-Token": theirs},
    )

    assert forged.status_code == 403
    assert forged_api.status_code == 403
    assert forged_api.json()["error"] == "csrf_failed"
    assert "Mallory" not in browser(a).get("/profile").text


# -- rate limits count every process's requests -------------------------------------------------


@pytest.fixture(params=["database", "redis"])
def limited(request: pytest.FixtureRequest, deployment: Deployment) -> Iterator[tuple[Served, ...]]:
    """Two processes with the read limit, counting in the database (the default) or Redis."""
    if request.param == "database":
        yield deployment.a, deployment.b
        return
    redis_url = request.getfixturevalue("redis_url")
    with served_together(
        2,
        deployment.database_url,
        deployment.key_dir,
        vendor_reads_per_minute=READ_LIMIT,
        token_requests_per_minute=TOKEN_LIMIT,
        redis_url=redis_url,
        base_url=deployment.a.url,  # the same vault, so the same public URL
    ) as pair:
        yield pair


def test_reads_through_both_processes_count_against_one_limit(
    deployment: Deployment, limited: tuple[Served, ...], browser: Browser
) -> None:
    a, b = limited
    rt = deployment.rt
    with rt.sessions() as db:
        person = individual(browser(a), db, rt, given_name="Ada")
    # A fixed one-minute window: should the minute turn during the reads, their counts fall
    # in two windows; then it is tried again with a new app, in the new minute.
    for _ in range(2):
        with rt.sessions() as db:
            app = make_app(db)
            headers = bearer(db, rt, app, connect(db, rt, person, app, ["given_name"]))
        minute = time.time() // 60
        within = [read(server, headers) for server in (a, b) * (READ_LIMIT // 2)]
        over = [read(a, headers), read(b, headers)]
        if time.time() // 60 == minute:
            break
    assert [r.status_code for r in within] == [200] * READ_LIMIT
    remaining = [int(r.headers["RateLimit-Remaining"]) for r in within]
    assert remaining == list(range(READ_LIMIT - 1, -1, -1))
    assert [r.status_code for r in over] == [429, 429]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in over)
    assert over[0].json()["error"] == "rate_limited"


def app_token_at(server: Served, vendor: Vendor) -> httpx.Response:
    """A client-credentials token asked of ``server`` (on PostgreSQL answered in its event
    loop), on a connection of its own."""
    return httpx.post(
        server.url + "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "intents:read"},
        auth=(vendor.client_id, vendor.secret),
    )


def test_tokens_through_both_processes_count_against_one_limit_and_revoke_everywhere(
    deployment: Deployment, limited: tuple[Served, ...]
) -> None:
    a, b = limited
    rt = deployment.rt
    for _ in range(2):  # again with a new app, should the minute turn during the requests
        with rt.sessions() as db:
            vendor = make_vendor(
                db,
                rt,
                vendor_scopes=("intents:read",),
                agreements=("service-only", "no-tracking", "intent-sharing"),
            )
        minute = time.time() // 60
        within = [app_token_at(server, vendor) for server in (a, b) * (TOKEN_LIMIT // 2)]
        over = [app_token_at(a, vendor), app_token_at(b, vendor)]
        if time.time() // 60 == minute:
            break
    assert [r.status_code for r in within] == [200] * TOKEN_LIMIT
    remaining = [int(r.headers["RateLimit-Remaining"]) for r in within]
    assert remaining == list(range(TOKEN_LIMIT - 1, -1, -1))
    assert [r.status_code for r in over] == [429, 429]
    assert {r.json()["error"] for r in over} == {"slow_down"}
    # A token one process issued works at the other, until it is revoked through either.
    access = within[0].json()["access_token"]
    bearer_header = {"authorization": f"Bearer {access}"}
    assert httpx.get(b.url + "/vendor/v1/intents", headers=bearer_header).status_code == 200
    revoked = httpx.post(
        a.url + "/oauth/revoke", data={"token": access}, auth=(vendor.client_id, vendor.secret)
    )
    assert revoked.status_code == 200
    assert httpx.get(b.url + "/vendor/v1/intents", headers=bearer_header).status_code == 401


# -- single-use codes and refresh rotation hold across processes --------------------------------


def authorization_code(
    rt: Runtime, browser: Browser, page_at: Served, post_at: Served
) -> tuple[Vendor, str, str]:
    """The authorization code flow up to the code: the consent page shown by ``page_at``, the
    person's answer posted to ``post_at``. Returns (vendor, code, PKCE verifier)."""
    with rt.sessions() as db:
        vendor = make_vendor(db, rt)
        individual(browser(page_at), db, rt, given_name="Ada")
    oauth = OAuth2Client(
        client_id=vendor.client_id,
        scope=SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )
    verifier = new_verifier()
    url, state = oauth.create_authorization_url(
        page_at.url + "/oauth/authorize", code_verifier=verifier
    )
    page = browser(page_at).get(url)
    assert page.status_code == 200, page.text
    answer: dict[str, Any] = {**hidden_fields(page.text), "decision": "allow", "duration": "30d"}
    answer["field"] = ticked_fields(page.text)
    response = browser(post_at).post("/oauth/authorize", data=answer)
    assert response.status_code == 302, response.text
    found = query_of(response.headers["location"])
    assert found["state"] == state
    return vendor, found["code"], verifier


def redeem(server: Served, vendor: Vendor, code: str, verifier: str) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    return httpx.post(
        server.url + "/oauth/token", data=data, auth=(vendor.client_id, vendor.secret)
    )


def refresh(server: Served, vendor: Vendor, refresh_token: str) -> httpx.Response:
    return httpx.post(
        server.url + "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(vendor.client_id, vendor.secret),
    )


def introspect(server: Served, vendor: Vendor, token: str) -> dict[str, Any]:
    response = httpx.post(
        server.url + "/oauth/introspect",
        data={"token": token},
        auth=(vendor.client_id, vendor.secret),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearing(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def all_at_once(
    calls: list[tuple[Served, Callable[[httpx.Client], httpx.Response]]],
) -> list[httpx.Response]:
    """Each ``(server, send)`` on a thread of its own with a connection already open to its
    server, all released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: tuple[Served, Callable[[httpx.Client], httpx.Response]]) -> httpx.Response:
        server, send = call
        with httpx.Client(base_url=server.url) as client:
            client.get("/healthz")  # the connection is open before the race starts
            barrier.wait(timeout=30)
            return send(client)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_a_code_redeemed_at_both_processes_at_once_is_good_once_and_the_replay_revokes_it(
    deployment: Deployment, browser: Browser
) -> None:
    a, b = deployment.a, deployment.b
    vendor, code, verifier = authorization_code(deployment.rt, browser, a, b)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }

    def send(client: httpx.Client) -> httpx.Response:
        return client.post("/oauth/token", data=data, auth=(vendor.client_id, vendor.secret))

    responses = all_at_once([(a, send), (b, send)])

    assert sorted(r.status_code for r in responses) == [200, 400], [r.text for r in responses]
    [refused] = [r.json() for r in responses if r.status_code == 400]
    assert refused["error"] == "invalid_grant"
    [winner] = [r.json() for r in responses if r.status_code == 200]
    # The second use was a replay: what the first use issued is revoked, in both processes.
    assert [read(s, bearing(winner["access_token"])).status_code for s in (a, b)] == [401, 401]
    assert introspect(a, vendor, winner["access_token"]) == {"active": False}
    assert introspect(b, vendor, winner["refresh_token"]) == {"active": False}
    assert refresh(a, vendor, winner["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_refresh_token_rotated_through_one_process_is_refused_by_the_other(
    deployment: Deployment, browser: Browser
) -> None:
    a, b = deployment.a, deployment.b
    vendor, code, verifier = authorization_code(deployment.rt, browser, a, a)
    first = redeem(a, vendor, code, verifier).json()

    rotated = refresh(a, vendor, first["refresh_token"])

    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert read(b, bearing(new["access_token"])).status_code == 200
    assert read(b, bearing(first["access_token"])).status_code == 401

    reuse = refresh(b, vendor, first["refresh_token"])

    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    # Reuse revokes the whole family, in both processes.
    assert [read(s, bearing(new["access_token"])).status_code for s in (a, b)] == [401, 401]
    assert introspect(a, vendor, new["refresh_token"]) == {"active": False}
    assert refresh(a, vendor, new["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_refresh_token_spent_at_both_processes_at_once_is_good_once_and_the_reuse_revokes_it(
    deployment: Deployment, browser: Browser
) -> None:
    a, b = deployment.a, deployment.b
    vendor, code, verifier = authorization_code(deployment.rt, browser, b, a)
    first = redeem(b, vendor, code, verifier).json()
    data = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}

    def send(client: httpx.Client) -> httpx.Response:
        return client.post("/oauth/token", data=data, auth=(vendor.client_id, vendor.secret))

    responses = all_at_once([(a, send), (b, send)])

    assert sorted(r.status_code for r in responses) == [200, 400], [r.text for r in responses]
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert [read(s, bearing(winner["access_token"])).status_code for s in (a, b)] == [401, 401]
    assert introspect(b, vendor, winner["refresh_token"]) == {"active": False}


# -- one command, two worker processes ----------------------------------------------------------


def children(server: Served) -> list[int]:
    """The process ids of the ``vrm serve`` command's children (its workers among them)."""
    pid = server.process.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def worker_holding(server: Served, response: httpx.Response) -> int:
    """The worker process that holds the connection ``response`` came on (Linux's /proc:
    the server side of the connection is a socket, one of that process's open files)."""
    return worker_of(server, response.extensions["network_stream"].get_extra_info("client_addr")[1])


def worker_of(server: Served, client_port: int) -> int:
    """The worker process that holds the connection from ``client_port``."""
    server_port = int(server.url.rsplit(":", 1)[1])
    inodes = {
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if int(fields[1].rsplit(":", 1)[1], 16) == server_port
        and int(fields[2].rsplit(":", 1)[1], 16) == client_port
    }
    for pid in children(server):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):  # closed meanwhile
                if os.readlink(fd) in {f"socket:[{inode}]" for inode in inodes}:
                    return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def reads_by_worker(server: Served, headers: dict[str, str], each: int) -> dict[int, list[int]]:
    """Profile reads, each on a new connection, until both workers have answered ``each`` of
    them (the kernel hands a new connection to whichever worker accepts it first): the
    statuses, by worker."""
    statuses: dict[int, list[int]] = {}
    for _ in range(50 * each):
        with httpx.Client(base_url=server.url) as vendor:
            response = vendor.get(PROFILE, headers=headers)
            statuses.setdefault(worker_holding(server, response), []).append(response.status_code)
        if len(statuses) == 2 and min(map(len, statuses.values())) >= each:
            return statuses
    raise AssertionError(f"the reads did not reach both workers: {statuses}\n{server.log()}")


def test_two_workers_serve_reads_and_both_refuse_them_after_a_revocation(
    deployment: Deployment, browser: Browser
) -> None:
    """``vrm serve --workers 2``: each worker has served (and opened the person's data key
    for) reads before the person revokes through the portal; every read after, on each
    worker, is refused."""
    with served(
        deployment.database_url, deployment.key_dir, workers=2, base_url=deployment.a.url
    ) as server:
        grant, headers = a_reader(deployment.rt, browser(server), ["given_name"])
        before = reads_by_worker(server, headers, each=2)
        assert [set(statuses) for statuses in before.values()] == [{200}, {200}]

        revoked = post_form(browser(server), f"/connections/{grant.id}/revoke", {}, "/connections")

        assert revoked.status_code == 303, revoked.text
        after = reads_by_worker(server, headers, each=10)
        assert [set(statuses) for statuses in after.values()] == [{401}, {401}]


def test_two_workers_share_connections_opened_at_once(tmp_path: Path) -> None:
    """``vrm serve --workers 2`` with a client (or a proxy) that opens its keep-alive
    connections all at once: both workers get some. Each worker listens on a socket of its
    own (``vrm.server``); from one shared socket, the first worker to wake took them all.
    (Nothing here depends on the database: SQLite, once.)"""
    url, keys = f"sqlite:///{tmp_path / 'vrm.db'}", tmp_path / "keys"
    with vault(url, keys), served(url, keys, workers=2) as server:
        host, port = server.url.removeprefix("http://").split(":")
        deadline = time.monotonic() + 60
        while listening(int(port)) < 2:  # the first worker answers before the second listens
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        with ExitStack() as stack:
            conns = [
                stack.enter_context(socket.create_connection((host, int(port)), timeout=10))
                for _ in range(24)
            ]
            for conn in conns:
                conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            for conn in conns:
                assert conn.recv(4096).startswith(b"HTTP/1.1 200"), server.log()
            holders = Counter(worker_of(server, conn.getsockname()[1]) for conn in conns)

    # Spread by a hash of each connection's ports: both get some unless 24 coins all fell
    # the same way (one chance in 8 million).
    assert len(holders) == 2, holders


def listening(port: int) -> int:
    """How many sockets listen on ``port`` (Linux's /proc; state 0A is LISTEN)."""
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return sum(1 for f in rows if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A")
