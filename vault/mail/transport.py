"""Handing a message to the world: SMTP (STARTTLS or TLS), or in development without SMTP an
``.eml`` file per message under ``mail_dir``."""

from __future__ import annotations

import os
import smtplib
import ssl
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from vault.settings import Settings

SMTP_TIMEOUT = 30.0


class SendFailed(Exception):
    """The message was not accepted; the text is safe to store and print (no address)."""


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        implicit = parts.scheme.lower() == "smtps"
        tls_off = parse_qs(parts.query).get("tls", [""])[0].lower() == "none"
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or (465 if implicit else 587),
            implicit_tls=implicit,
            starttls=not implicit and not tls_off,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def send(settings: Settings, raw: bytes, name: str) -> None:
    """Send one message (raises :class:`SendFailed`). ``name`` names its file in development."""
    if not settings.smtp_url:
        write_eml(settings.mail_dir, raw, name)
        return
    target = SmtpTarget.parse(settings.smtp_url)
    message = BytesParser(policy=policy.SMTP).parsebytes(raw)
    context = ssl.create_default_context()
    try:
        smtp: smtplib.SMTP
        if target.implicit_tls:
            smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=SMTP_TIMEOUT, context=context)
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=SMTP_TIMEOUT)
        with smtp:
            smtp.ehlo()
            if target.starttls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if target.username:
                smtp.login(target.username, target.password or "")
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        raise SendFailed(f"refused: SMTP {exc.smtp_code}") from None
    except smtplib.SMTPRecipientsRefused:
        raise SendFailed("recipient refused") from None
    except smtplib.SMTPNotSupportedError:
        raise SendFailed("the server does not offer STARTTLS") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise SendFailed(f"could not send ({type(exc).__name__})") from None


def write_eml(directory: Path, raw: bytes, name: str) -> Path:
    """Write one message as ``name.eml`` (mode 0600, written then renamed into place)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.eml"
    partial = directory / f".{name}.part"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(raw)
    os.replace(partial, path)
    return path
