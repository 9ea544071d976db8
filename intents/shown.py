"""An open intent as a vendor app is shown it: by the vendor API (``IntentOut``) and in the
webhooks that announce intents, the same fields in the same order."""

from __future__ import annotations

from typing import Any

from intents import money, taxonomy


def intent_fields(intent: Any, owner: str, title: str, description: str) -> dict[str, Any]:
    """An open intent as a vendor app is shown it (the vendor API's ``IntentOut``, a webhook's
    ``intent``), in that order: ``intent``'s columns (an ORM object or a row), the owner's
    pseudonym for the app, the decrypted title and description."""
    category = taxonomy.CATEGORIES.get(intent.category)
    assert intent.published_at is not None
    return {
        "id": str(intent.id),
        "owner": owner,
        "category": intent.category,
        "category_label": category.path_label if category else intent.category,
        "title": title,
        "description": description,
        "quantity": intent.quantity,
        "max_budget": money.format_amount(intent.budget_minor, intent.currency),
        "currency": intent.currency,
        "country": intent.country,
        "city": intent.city,
        "online": intent.online,
        "needed_by": intent.needed_by,
        "expires_at": intent.expires_at,
        "published_at": intent.published_at,
    }
