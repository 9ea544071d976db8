"""Vendor API tests use the portal's extra-browser fixtures (a second individual)."""

from tests.web.conftest import browsers, second_client

__all__ = ["browsers", "second_client"]
