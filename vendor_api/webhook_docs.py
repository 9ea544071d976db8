"""The webhooks section of the vendor API's OpenAPI document: every event the vault sends, each
described by the model its sender queues (:mod:`consent.grants.events`, :mod:`intents.events`),
with the Standard Webhooks headers and the retry policy.
"""

from __future__ import annotations

from typing import Any, Final

from consent.grants.events import (
    ConsentChangedData,
    ConsentGrantedData,
    ConsentRevokedData,
    SubjectErasedData,
)
from consent.webhooks import attempts, signing
from consent.webhooks.events import WebhookEvent
from intents.events import (
    IntentChangedData,
    IntentClosedData,
    IntentPublishedData,
    IntentWithdrawnData,
    OfferAcceptedData,
    OfferDeclinedData,
    OfferLapsedData,
)
from vault.settings import Settings
from vendor_api.openapi import component_schemas, json_content, schema_ref

WEBHOOK_EVENTS: Final[tuple[type[WebhookEvent], ...]] = (
    OfferAcceptedData,
    OfferDeclinedData,
    OfferLapsedData,
    IntentPublishedData,
    IntentChangedData,
    IntentWithdrawnData,
    IntentClosedData,
    ConsentGrantedData,
    ConsentChangedData,
    ConsentRevokedData,
    SubjectErasedData,
)
"""Every event the vault sends, in the order the reference lists them."""


def webhook_schemas() -> dict[str, Any]:
    """The component schemas of the events' ``data``, as the vault serialises it."""
    return component_schemas((event, "serialization") for event in WEBHOOK_EVENTS)


def _headers() -> list[dict[str, Any]]:
    header = {"type": "string"}
    return [
        {
            "name": "webhook-id",
            "in": "header",
            "required": True,
            "schema": header,
            "description": "The message id: the same on every retry. Deduplicate on it.",
        },
        {
            "name": "webhook-timestamp",
            "in": "header",
            "required": True,
            "schema": header,
            "description": "Unix seconds of this attempt. Refuse it when more than "
            f"{signing.DEFAULT_TOLERANCE} seconds from your clock.",
        },
        {
            "name": "webhook-signature",
            "in": "header",
            "required": True,
            "schema": header,
            "description": "`v1,` and the base64 HMAC-SHA256 of `webhook-id.webhook-timestamp."
            "body` under your app's secret (the base64 after `whsec_`). Several signatures may "
            "be sent, separated by spaces.",
        },
    ]


def _retry_policy(settings: Settings) -> str:
    hours = int(attempts.BACKOFF_CAP.total_seconds() // 3600)
    return (
        "Anything else, a redirect, or no answer within "
        f"{settings.webhook_deadline_seconds:g} seconds is "
        f"retried after {int(attempts.BACKOFF_BASE.total_seconds())} s, each wait "
        f"{attempts.BACKOFF_FACTOR} times the last (at most {hours} h, with jitter), and "
        "abandoned after "
        f"{attempts.MAX_ATTEMPTS} attempts. Each app's messages arrive in the order they "
        "were queued: one that fails holds back the app's later ones until it is delivered "
        "or abandoned (those that waited behind an abandoned one get one attempt each), and "
        "when a delivery to the webhook URL succeeds, every waiting message follows at once. "
        "The developer console shows every attempt and the endpoint's health, and can resend "
        "a message."
    )


def webhooks(settings: Settings) -> dict[str, Any]:
    """The document's ``webhooks``: one POST per event type, its body the message the outbox
    queues (``{"type", "timestamp", "data"}``)."""
    parameters = _headers()
    retry = _retry_policy(settings)
    found: dict[str, Any] = {}
    for event in WEBHOOK_EVENTS:
        envelope = {
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"const": event.event_type, "description": "The event type."},
                "timestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the change happened (UTC).",
                },
                "data": schema_ref(event.__name__),
            },
        }
        found[event.event_type] = {
            "post": {
                "summary": event.summary,
                "description": event.description,
                "operationId": "webhook_" + event.event_type.replace(".", "_"),
                "parameters": parameters,
                "requestBody": {"required": True, "content": json_content(envelope)},
                "responses": {
                    "2XX": {"description": "Received. The body of your answer is ignored."},
                    "default": {"description": retry},
                },
            }
        }
    return found
