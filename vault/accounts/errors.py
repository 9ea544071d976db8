from __future__ import annotations

from vault.errors import Conflict, InvalidInput, NotAuthenticated, TooManyRequests


class BadCredentials(NotAuthenticated):
    """Wrong email or password (never says which)."""

    code = "bad_credentials"

    def __init__(self) -> None:
        super().__init__("The email address or password is not right.")


class SignInThrottled(TooManyRequests):
    """Too many failed sign-ins for this address or from this network."""

    code = "sign_in_throttled"

    def __init__(self, retry_after_seconds: int) -> None:
        minutes = max(1, -(-retry_after_seconds // 60))
        super().__init__(
            f"Too many failed sign-in attempts. Wait {minutes} minute"
            f"{'s' if minutes != 1 else ''} and try again.",
            headers={"Retry-After": str(retry_after_seconds)},
        )
        self.retry_after_seconds = retry_after_seconds


class EmailUnavailable(Conflict):
    """The address cannot be used for a new account."""

    code = "email_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "This email address cannot be used for a new account. If it is yours, sign in instead."
        )


class WeakPassword(InvalidInput):
    code = "weak_password"


class EmailNotConfirmed(NotAuthenticated):
    """The password is right, but the address was never confirmed from the mail."""

    code = "email_not_confirmed"

    def __init__(self) -> None:
        super().__init__(
            "Confirm your email address first: open the link in the email we sent when you "
            "signed up. Lost it? Sign up again with the same address and we send it again."
        )
