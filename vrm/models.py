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
    LedgerPending,
    LedgerSubject,
    LedgerVendorSubject,
)
from consent.oauth.models import ConsentEvent
from consent.vendors.models import RateLimitWindow, VendorApp
from consent.webhooks.models import WebhookAttempt, WebhookMessage
from intents.models import Intent, IntentBlock, IntentNotice, IntentSubscription, Offer
from vault.accounts.models import Account, AccountSession, ApiToken, KnownDevice, SignInThrottle
from vault.base import Base
from vault.factors.models import (
    FactorChallenge,
    Passkey,
    RecoveryCode,
    SessionFactorCheck,
    TotpFactor,
)
from vault.keystore import DataKeyRecord
from vault.mail.models import AccountLink, MailMessage, Notice, NoticeSetting
from vault.profile.models import ProfileField

__all__ = [
    "AccessLogEntry",
    "Account",
    "AccountLink",
    "AccountSession",
    "ApiToken",
    "AuthorizationCode",
    "Base",
    "ConsentEvent",
    "DataKeyRecord",
    "FactorChallenge",
    "Grant",
    "Intent",
    "IntentBlock",
    "IntentNotice",
    "IntentSubscription",
    "KnownDevice",
    "LedgerCheckpoint",
    "LedgerEntry",
    "LedgerHead",
    "LedgerNode",
    "LedgerPending",
    "LedgerSubject",
    "LedgerVendorSubject",
    "MailMessage",
    "Notice",
    "NoticeSetting",
    "OAuthToken",
    "Offer",
    "Passkey",
    "PreviousVendors",
    "ProfileField",
    "RateLimitWindow",
    "RecoveryCode",
    "SessionFactorCheck",
    "SignInThrottle",
    "TotpFactor",
    "VendorApp",
    "WebhookAttempt",
    "WebhookMessage",
]
