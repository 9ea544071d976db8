"""What a message says: a subject, a few paragraphs, at most one button-like link, and for
notices that can be switched off an unsubscribe link. Rendered as plain text and HTML.

Messages hold no profile value beyond the address they go to: the words are fixed per kind,
and anything a message is about is named by a link into the vault, where the person sees it
after signing in."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from vault.base import utcnow
from vault.settings import Settings


@dataclass(frozen=True, slots=True)
class Action:
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class Letter:
    """The words of one message, before it has a recipient."""

    subject: str
    paragraphs: tuple[str, ...]
    action: Action | None = None
    after: tuple[str, ...] = ()
    """Paragraphs after the link (what to do if this was not you)."""
    unsubscribe_url: str | None = None
    """Set for notices a person can switch off: a footer link and the List-Unsubscribe
    headers (RFC 2369, and RFC 8058 one-click)."""
    headers: dict[str, str] = field(default_factory=dict)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{subject}</title></head>
<body style="font-family: system-ui, sans-serif; line-height: 1.5; color: #1b1f24;">
{body}
<hr>
<p style="color: #57606a; font-size: 0.9em;">{footer}</p>
</body></html>
"""


def _footer(letter: Letter) -> tuple[str, Markup]:
    text = "VRM Vault: your data, on your terms."
    html = escape(text)
    if letter.unsubscribe_url:
        text += f"\nTo stop these emails: {letter.unsubscribe_url}"
        html += Markup(' <a href="{0}">Stop these emails</a>.').format(letter.unsubscribe_url)
    return text, html


def render(letter: Letter, settings: Settings, to: str) -> EmailMessage:
    """The MIME message: ``multipart/alternative`` with a text and an HTML part."""
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Subject"] = letter.subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain=urlsplit(settings.base_url).hostname or "localhost")
    msg["Auto-Submitted"] = "auto-generated"
    if letter.unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{letter.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in letter.headers.items():
        msg[name] = value
    text_parts = list(letter.paragraphs)
    html_parts = [Markup("<p>{0}</p>").format(p) for p in letter.paragraphs]
    if letter.action is not None:
        text_parts.append(f"{letter.action.label}:\n{letter.action.url}")
        html_parts.append(
            Markup('<p><a href="{0}" style="font-weight: bold;">{1}</a></p>').format(
                letter.action.url, letter.action.label
            )
        )
        html_parts.append(
            Markup('<p style="font-size: 0.9em;">Or copy this address: {0}</p>').format(
                letter.action.url
            )
        )
    text_parts.extend(letter.after)
    html_parts.extend(Markup("<p>{0}</p>").format(p) for p in letter.after)
    footer_text, footer_html = _footer(letter)
    msg.set_content("\n\n".join(text_parts) + "\n\n-- \n" + footer_text + "\n")
    msg.add_alternative(
        _HTML.format(
            subject=escape(letter.subject), body="\n".join(html_parts), footer=footer_html
        ),
        subtype="html",
    )
    return msg
