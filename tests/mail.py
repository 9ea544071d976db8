"""Reading the mail the vault sent: through a real SMTP server in the test process (aiosmtpd),
or, for the many tests that only need a confirmed account, the outbox itself (decrypted as
the worker does)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from vault.keystore import KeyStore
from vault.mail.models import MailMessage
from vault.mail.outbox import message_binding
from vault.runtime import Runtime

_URL = re.compile(r"https?://[^\s<>\"]+")


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None, "the message has no text part"
    return str(body.get_content())


def html_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("html",))
    assert body is not None, "the message has no HTML part"
    return str(body.get_content())


def links_in(message: EmailMessage) -> list[str]:
    return _URL.findall(text_of(message))


def link_to(message: EmailMessage, path: str) -> str:
    """The one link in the text part whose path is ``path``."""
    found = [url for url in links_in(message) if urlsplit(url).path == path]
    assert len(found) == 1, f"expected one link to {path}, found {links_in(message)}"
    return found[0]


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["t"][0]


def queued(rt: Runtime, to: str | None = None, kind: str | None = None) -> list[EmailMessage]:
    """Messages waiting in the outbox (oldest first), decrypted, optionally only those to
    ``to`` or of ``kind``."""
    found = []
    with rt.sessions() as db:
        query = select(MailMessage).where(MailMessage.sent_at.is_(None))
        if kind is not None:
            query = query.where(MailMessage.kind == kind)
        keys = KeyStore(db, rt.keys)
        for row in db.scalars(query.order_by(MailMessage.created_at)):
            assert row.message_ct is not None
            raw = keys.decrypt(message_binding(row.account_id, row.id, row.kind), row.message_ct)
            message = parse(raw)
            # Addresses are compared as the vault compares them (the domain is normalised).
            if to is None or str(message["To"]).lower() == to.lower():
                found.append(message)
    return found


def last_queued(rt: Runtime, to: str, kind: str | None = None) -> EmailMessage:
    found = queued(rt, to, kind)
    assert found, f"no mail queued to {to}"
    return found[-1]


@dataclass
class Inbox:
    """What a real SMTP server received: parsed messages, and each one's envelope."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refuse: bool = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return "451 4.3.0 try again later"
        with self.lock:
            self.messages.append(parse(envelope.content))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


@dataclass
class SmtpServer:
    url: str
    inbox: Inbox


@contextmanager
def running_smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1; ``url`` is what ``VRM_SMTP_URL`` would say
    (plain: a local catcher, development only)."""
    inbox = Inbox()
    with socket.socket() as probe:  # a free port (aiosmtpd's start-up check needs a real one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(f"smtp://127.0.0.1:{port}?tls=none", inbox)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server for this test."""
    with running_smtp() as server:
        yield server
