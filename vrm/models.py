"""Every model of every package, imported so that ``Base.metadata`` is complete."""

from consent.grants.models import (
    AccessLogEntry,
    AuthorizationCode,
    Grant,
    OAuthToken,
    PreviousVendors,
)
from consent.ledger.models import (
    LedgerCheckpoint,
    LedgerEntry,
    LedgerHead,
    LedgerNode,
    LedgerSubject,
    LedgerVendorSubject,
)
from consent.oauth.models import ConsentEvent
from consent.vendors.models import RateLimitWindow, VendorApp
from consent.webhooks.models import WebhookAttempt, WebhookMessage
from intents.models import Intent, IntentBlock, Offer
from vault.accounts.models import Account, AccountSession, SignInThrottle
from vault.base import Base
from vault.keystore import DataKeyRecord
from vault.mail.models import AccountLink, MailMessage, Notice, NoticeSetting
from vault.profile.models import ProfileField

__all__ = [
    "AccessLogEntry",
    "Account",
    "AccountLink",
    "AccountSession",
    "AuthorizationCode",
    "Base",
    "ConsentEvent",
    "DataKeyRecord",
    "Grant",
    "Intent",
    "IntentBlock",
    "LedgerCheckpoint",
    "LedgerEntry",
    "LedgerHead",
    "LedgerNode",
    "LedgerSubject",
    "LedgerVendorSubject",
    "MailMessage",
    "Notice",
    "NoticeSetting",
    "OAuthToken",
    "Offer",
    "PreviousVendors",
    "ProfileField",
    "RateLimitWindow",
    "SignInThrottle",
    "VendorApp",
    "WebhookAttempt",
    "WebhookMessage",
]
