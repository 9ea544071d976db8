"""The ``deployment`` fixture (a real, committed database driven through ``vrm``) for ledger
tests that tamper with stored rows or run the ledger commands."""

from tests.vault.conftest import deployment

__all__ = ["deployment"]
