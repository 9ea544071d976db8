"""Errors of the intents domain."""

from __future__ import annotations

from typing import Any

from vault.errors import Conflict, InvalidInput


class InvalidIntent(InvalidInput):
    """An intent or offer that breaks a rule; ``errors`` maps every faulty field to a sentence."""

    code = "invalid_input"

    def __init__(self, errors: dict[str, str]) -> None:
        first = next(iter(errors))
        super().__init__(errors[first], field=first)
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body = super().body()
        if len(self.errors) > 1:
            body["errors"] = dict(self.errors)
        return body


class IntentClosed(Conflict):
    """The intent no longer takes offers (an offer was accepted, or it was withdrawn or expired)."""

    code = "intent_closed"


class OfferDeclined(Conflict):
    """The individual declined your offer on this intent; it takes no new offer from your app."""

    code = "offer_declined"


class OfferNotLive(Conflict):
    """The offer was already accepted, declined, withdrawn or lapsed."""

    code = "offer_not_live"


class OfferChanged(Conflict):
    """The vendor changed the offer after the individual opened it."""

    code = "offer_changed"


class CurrencyMismatch(InvalidInput):
    """The offer's currency is not the intent's."""

    code = "currency_mismatch"


class SubscriptionLimit(Conflict):
    """Your app keeps as many subscriptions as it may; delete or widen one first."""

    code = "subscription_limit"
