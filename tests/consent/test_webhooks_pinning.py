"""DNS rebinding: the worker connects to the address its check accepted, not to what a second
lookup of the name answers, and keeps the name for the Host header, SNI and the certificate.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session

from consent.webhooks.delivery import deliver_due
from consent.webhooks.outbox import enqueue
from consent.webhooks.pinning import pinned, pinned_transport
from tests.consent.test_webhooks import GRANTED, attempts_of, make_app
from tests.helpers import run_async
from tests.webhook_receiver import trickle
from vault.runtime import Runtime

NAME = "hooks.rebind.example"
IDN = ("hooks.bücher.example", "hooks.xn--bcher-kva.example")  # as written, as sent
PUBLIC = "93.184.215.14"  # a global address: what the name answers to the check


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """``NAME`` resolves to a public address once (the check), then to 127.0.0.1 (a second
    lookup by the HTTP client). Yields the hosts every TCP connection was opened to; one to the
    public address fails at once (the tests have no internet)."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = httpcore.AnyIOBackend.connect_tcp
    lookups = 0
    connected: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal lookups
        if (host.decode() if isinstance(host, bytes) else host) not in (NAME, IDN[1]):
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups += 1
        address = PUBLIC if lookups == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]

    async def connect_tcp(
        self: httpcore.AnyIOBackend, host: str, port: int, *args: Any, **kwargs: Any
    ) -> Any:
        connected.append(host)
        if host == PUBLIC:
            raise httpcore.ConnectError("unreachable in tests")
        return await real_connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    yield connected


@pytest.mark.parametrize("host", [NAME, IDN[0]], ids=["ascii", "idn"])
def test_a_delivery_connects_to_the_checked_address_not_to_a_second_lookups(
    db: Session, rt: Runtime, rebinding: list[str], host: str
) -> None:
    with trickle() as internal:  # a service on this machine that the name rebinds to
        port = internal.url.split(":")[2].split("/")[0]
        message = enqueue(db, make_app(db, f"https://{host}:{port}/hooks"), GRANTED)
        assert message is not None

        assert deliver_due(rt.sessions, rt, deadline=5) == 1

        assert internal.requests == 0  # no connection reached the rebound address
    assert rebinding == [PUBLIC]
    [attempt] = attempts_of(db, message)
    assert (attempt.status_code, attempt.error) == (None, "could not connect")


def test_a_name_that_does_not_resolve_at_the_check_is_not_looked_up_again(
    db: Session, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first answer that fails must not leave the lookup to the HTTP client, whose answer
    (the internal address here) nobody checked."""
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name != NAME:
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(name)
        if len(lookups) == 1:
            raise socket.gaierror(socket.EAI_AGAIN, "temporary failure")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with trickle() as internal:
        port = internal.url.split(":")[2].split("/")[0]
        message = enqueue(db, make_app(db, f"https://{NAME}:{port}/hooks"), GRANTED)
        assert message is not None

        assert deliver_due(rt.sessions, rt, deadline=5) == 1

        assert internal.requests == 0
    assert lookups == [NAME]
    [attempt] = attempts_of(db, message)
    assert attempt.error == "the webhook URL's host name does not resolve"


# -- The pinned transport over TLS ------------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for ``NAME`` it signed: (CA file, certificate, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_a_pinned_https_connection_keeps_the_name_for_host_sni_and_certificate(
    tmp_path: Path,
) -> None:
    ca_file, cert, key = _certificates(tmp_path)
    seen: dict[str, str | None] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen["host"] = self.headers.get("host")
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen["sni"] = name

    server_context.sni_callback = sni  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    port = server.server_port

    async def post() -> int:
        verify = ssl.create_default_context(cafile=str(ca_file))
        async with httpx.AsyncClient(transport=pinned_transport(verify=verify)) as client:
            with pinned(NAME, ["127.0.0.1"]):  # the name itself resolves nowhere
                response = await client.post(f"https://{NAME}:{port}/hooks", content=b"{}")
        return response.status_code

    try:
        assert run_async(post()) == 204
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert seen == {"sni": NAME, "host": f"{NAME}:{port}"}


def test_outside_a_pinned_block_a_name_is_not_redirected(tmp_path: Path) -> None:
    async def post() -> None:
        async with httpx.AsyncClient(transport=pinned_transport()) as client:
            with pinned("elsewhere.example", ["127.0.0.1"]):
                pass
            await client.post(f"https://{NAME}.invalid/hooks", content=b"{}")

    with pytest.raises(httpx.ConnectError):
        run_async(post())


def test_inside_a_pinned_block_another_name_is_not_looked_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[Any] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    async def post() -> None:
        async with httpx.AsyncClient(transport=pinned_transport()) as client:
            with pinned(NAME, ["127.0.0.1"]):
                await client.post("https://localhost:9/hooks", content=b"{}")

    with pytest.raises(httpx.ConnectError, match="not the host that was checked"):
        run_async(post())
    assert looked_up == []
