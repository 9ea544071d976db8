"""Intent tests share the portal's fixtures: a second browser, row counts, other settings."""

from tests.vault.conftest import deployment
from tests.web.conftest import browsers, client_with, count, second_client

__all__ = ["browsers", "client_with", "count", "deployment", "second_client"]
