"""Every model of every package, imported so that ``Base.metadata`` is complete."""

from consent.events import ConsentEvent
from consent.ledger.models import (
    LedgerCheckpoint,
    LedgerEntry,
    LedgerHead,
    LedgerNode,
    LedgerSubject,
)
from consent.models import (
    AccessLogEntry,
    AuthorizationCode,
    Grant,
    OAuthToken,
    VendorApp,
    WebhookAttempt,
    WebhookMessage,
)
from vault.accounts.models import Account, AccountSession, SignInThrottle
from vault.base import Base
from vault.keystore import DataKeyRecord
from vault.profile.models import ProfileField

__all__ = [
    "AccessLogEntry",
    "Account",
    "AccountSession",
    "AuthorizationCode",
    "Base",
    "ConsentEvent",
    "DataKeyRecord",
    "Grant",
    "LedgerCheckpoint",
    "LedgerEntry",
    "LedgerHead",
    "LedgerNode",
    "LedgerSubject",
    "OAuthToken",
    "ProfileField",
    "SignInThrottle",
    "VendorApp",
    "WebhookAttempt",
    "WebhookMessage",
]
