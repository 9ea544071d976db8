"""Every model of every package, imported so that ``Base.metadata`` is complete."""

from vault.accounts.models import Account, AccountSession, SignInThrottle
from vault.base import Base
from vault.keystore import DataKeyRecord
from vault.profile.models import ProfileField

__all__ = ["Account", "AccountSession", "Base", "DataKeyRecord", "ProfileField", "SignInThrottle"]
