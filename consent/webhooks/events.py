"""What a webhook says: one Pydantic model per event type, declared by the package that sends it
(``consent.grants.events``, ``intents.events``), on the base class here.

A model is the ``data`` of the event's message; the outbox takes nothing else, and the vendor
API reference documents each event from the same class (its JSON schema, ``summary`` and
``description``), so what is sent and what is documented cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema

IsoDateTime = Annotated[
    datetime,
    # As datetime.isoformat() writes it ("+00:00", never "Z"): what vendors have always received.
    PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A moment in a webhook's data."""


class WebhookEvent(BaseModel):
    """The ``data`` of one type of webhook event. A subclass is one event type: it names it
    and says, for the vendor API reference, what it means."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    """The message's ``type``, e.g. ``consent.granted``."""
    summary: ClassVar[str]
    """The reference's title of the event, a short sentence."""
    description: ClassVar[str]
    """When it is sent and what the vendor should do about it."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        missing = [
            name
            for name in ("event_type", "summary", "description")
            if not isinstance(cls.__dict__.get(name), str) or not cls.__dict__[name]
        ]
        if missing:
            raise TypeError(f"webhook event {cls.__name__} must set {', '.join(missing)}")
