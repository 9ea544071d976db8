from __future__ import annotations

from vault.errors import Conflict, Forbidden, InvalidInput, NotAuthenticated


class BadCode(InvalidInput):
    """A second-factor code or passkey answer that does not prove the factor."""

    code = "bad_code"

    def __init__(self, message: str = "The code is not right. Try the newest one.") -> None:
        super().__init__(message, field="code")


class PasskeyRefused(InvalidInput):
    code = "passkey_refused"

    def __init__(self, message: str = "The passkey could not be verified. Try again.") -> None:
        super().__init__(message, field="passkey")


class FactorConflict(Conflict):
    code = "factor_conflict"


class SignInStepExpired(NotAuthenticated):
    """The half-finished sign-in is gone: expired, used, or too many wrong codes."""

    code = "sign_in_expired"

    def __init__(self) -> None:
        super().__init__("This sign-in has expired. Enter your email address and password again.")


class StepUpRequired(Forbidden):
    """A grave step needs a second-factor check from the last few minutes."""

    code = "step_up_required"

    def __init__(self, next_path: str = "") -> None:
        super().__init__(
            "Confirm it is you with your second factor first (at /account/confirm), then try again."
        )
        self.next_path = next_path
