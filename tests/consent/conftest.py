"""Consent tests borrow the portal's second browser (for a second person)."""

from tests.web.conftest import browsers, second_client

__all__ = ["browsers", "second_client"]
