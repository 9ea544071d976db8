"""Sign-up: an account, its data key, and its sign-in address kept as an encrypted profile
field. Above both accounts and the profile, so that neither depends on the other's service."""

from __future__ import annotations

from sqlalchemy.orm import Session

from vault.accounts.models import Account, Role
from vault.accounts.service import AccountService
from vault.profile.service import ProfileService, validate_email
from vault.runtime import Runtime


def sign_up(
    db: Session,
    rt: Runtime,
    email: str,
    password: str,
    *,
    role: Role = Role.INDIVIDUAL,
    client_address: str = "",
) -> Account:
    """Create an account (in the caller's transaction). The email becomes an encrypted
    profile field; a taken address raises ``EmailUnavailable``."""
    clean_email = validate_email(email)
    account = AccountService(db, rt).create(
        clean_email, password, role=role, client_address=client_address
    )
    ProfileService(db, rt).store_email(account, clean_email)
    return account
